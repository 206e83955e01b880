//! The bus records' decoders on arbitrary bytes — what a node reads from Kafka, where a corrupt or
//! hostile record must be refused, never crash the consumer: the owner partitions' records, an
//! edge's records, and an edge's fan-out.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use starling_cluster::envelope::{EdgeInbound, EdgeRecord, OwnerRecord};

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    let _ = OwnerRecord::decode_stamped(bytes.clone());
    let _ = EdgeRecord::decode(bytes.clone());
    let _ = EdgeInbound::decode(bytes);
});
