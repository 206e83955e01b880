//! The contract of [`Things`]: records kept byte for byte and sorted by key within a registry,
//! replaced, removed; nothing leaks between registries.

use super::{large_blob, user};
use crate::store::Things;

pub async fn things(things: &dyn Things, prefix: &str) {
    let (registry, other) = (format!("registry.{prefix}.example.com"), format!("registry.{prefix}.example.net"));
    let key = |name: &str| user(prefix, "things", name);
    assert_eq!(things.list(&registry).await.expect("list"), Vec::new());
    things.set(&registry, &key("meter"), b"<thing v='1'/>".to_vec()).await.expect("set");
    things.set(&registry, &key("lamp"), large_blob()).await.expect("set");
    things.set(&other, &key("meter"), b"<thing/>".to_vec()).await.expect("set");
    let listed = things.list(&registry).await.expect("list");
    assert_eq!(listed, vec![(key("lamp"), large_blob()), (key("meter"), b"<thing v='1'/>".to_vec())], "sorted by key, records byte for byte, only this registry's");
    things.set(&registry, &key("meter"), b"<thing v='2'/>".to_vec()).await.expect("replace");
    things.remove(&registry, &key("lamp")).await.expect("remove");
    assert_eq!(things.list(&registry).await.expect("list"), vec![(key("meter"), b"<thing v='2'/>".to_vec())], "the last record wins");
    things.remove(&registry, &key("absent")).await.expect("removing what is not there");
    assert_eq!(things.list(&other).await.expect("list"), vec![(key("meter"), b"<thing/>".to_vec())], "the other registry's are untouched");
}
