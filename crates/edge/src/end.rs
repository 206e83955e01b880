//! How a client stream ends, whichever phase it is in: negotiation steps, the bound loop and the
//! framings all answer with an [`End`], and the connection writes the matching close.

use starling_protocol::{StreamError, StreamErrorCondition};
use starling_xml::FrameError;

/// Why negotiation or the session ended.
#[derive(Debug)]
pub(crate) enum End {
    /// Send this stream error, then close.
    Error(StreamError),
    /// The peer closed or the socket failed: nothing more to send.
    Gone,
    /// The peer closed the stream cleanly: answer with our close.
    Closed,
}

impl End {
    /// A stream error with a text saying what went wrong (RFC 6120 §4.9.2).
    pub(crate) fn error(condition: StreamErrorCondition, text: &str) -> End {
        End::Error(StreamError::new(condition).with_text(text))
    }
}

impl From<FrameError> for End {
    fn from(error: FrameError) -> End {
        match StreamError::for_frame_error(&error) {
            Some(stream_error) => End::Error(stream_error),
            None => End::Gone,
        }
    }
}

impl From<std::io::Error> for End {
    fn from(_: std::io::Error) -> End {
        End::Gone
    }
}
