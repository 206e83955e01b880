//! The client side of XEP-0198 stream management that the `mobile` scenario needs: enabling with
//! resumption after binding, and resuming on a new connection with the count of stanzas handled.

use std::net::IpAddr;

use starling_xml::Element;

use crate::xmpp::{self, LoginConfig, LoginError, Phase, PhaseTimes, Reader, Writer, tree};

pub const NS_SM: &str = "urn:xmpp:sm:3";

/// Sends `<enable resume='true'/>` and waits for `<enabled/>`; returns its id. What arrives before
/// it precedes the counting, and is skipped.
pub async fn enable(features: &Element, reader: &mut Reader, writer: &mut Writer) -> Result<String, LoginError> {
    if features.get_child("sm", NS_SM).is_none() {
        return Err(LoginError::Unexpected("stream management not offered".into()));
    }
    xmpp::send(writer, format!("<enable xmlns='{NS_SM}' resume='true'/>").as_bytes()).await?;
    loop {
        let element = xmpp::next_element(reader).await?;
        match (element.name.as_str(), element.ns.as_str()) {
            ("enabled", NS_SM) => {
                return element.attr("id").map(str::to_owned).ok_or_else(|| LoginError::Unexpected("<enabled/> without an id".into()));
            }
            ("failed", NS_SM) => return Err(LoginError::Unexpected("<failed/> to <enable/>".into())),
            ("iq", _) => xmpp::answer_iq(writer, &element).await?,
            _ => {}
        }
    }
}

/// A resumed stream.
pub struct Resumed {
    pub reader: Reader,
    pub writer: Writer,
}

/// Why a resumption did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error("{0}")]
    Login(#[from] LoginError),
    /// `<failed/>` with this condition.
    #[error("resumption failed: {0}")]
    Failed(String),
}

impl ResumeError {
    pub fn kind(&self) -> String {
        match self {
            ResumeError::Login(error) => error.kind(),
            ResumeError::Failed(condition) => format!("failed:{condition}"),
        }
    }
}

/// Connects again as `user` and resumes `previd`, telling the server we handled `h` stanzas.
pub async fn resume(login: &LoginConfig, user: &str, source: Option<IpAddr>, previd: &str, h: u32) -> Result<Resumed, ResumeError> {
    let attempt = async {
        let mut phase = Phase::Tcp;
        let mut times = PhaseTimes::default();
        let (mut reader, mut writer, features) = login.authenticated_stream(user, source, &mut phase, &mut times).await?;
        if features.get_child("sm", NS_SM).is_none() {
            return Err(ResumeError::Failed("not offered".into()));
        }
        let mut request = format!("<resume xmlns='{NS_SM}' h='{h}' previd='").into_bytes();
        starling_xml::escape_attr(&mut request, previd);
        request.extend_from_slice(b"'/>");
        xmpp::send(&mut writer, &request).await.map_err(LoginError::from)?;
        let answer = xmpp::next_element(&mut reader).await?;
        match (answer.name.as_str(), answer.ns.as_str()) {
            ("resumed", NS_SM) if answer.attr("h").and_then(|h| h.parse::<u32>().ok()).is_some() => Ok(Resumed { reader, writer }),
            ("resumed", NS_SM) => Err(ResumeError::Failed("<resumed/> without h".into())),
            ("failed", NS_SM) => {
                let condition = tree(&answer)?.children().next().map(|c| c.name().to_owned()).unwrap_or_else(|| "unspecified".into());
                Err(ResumeError::Failed(condition))
            }
            (name, _) => Err(ResumeError::Failed(format!("<{name}/> instead of <resumed/>"))),
        }
    };
    match tokio::time::timeout(login.timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(ResumeError::Failed("timeout".into())),
    }
}
