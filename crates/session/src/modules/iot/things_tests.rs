use super::*;

fn jid(text: &str) -> Jid {
    Jid::new(text).expect("jid")
}

fn tag(name: &str, value: &str) -> MetaTag {
    MetaTag { name: name.into(), value: TagValue::Str(value.into()) }
}

fn num(name: &str, value: f64) -> MetaTag {
    MetaTag { name: name.into(), value: TagValue::Num(value, value.to_string()) }
}

fn thing(tags: Vec<MetaTag>, owner: Option<&str>) -> Thing {
    Thing { full: jid("lamp@example.org/imc"), tags, owner: owner.map(jid), public: true }
}

#[test]
fn a_record_reads_back_as_it_was_written() {
    let key = (jid("rack@example.org"), NodeInfo { node_id: Some("imc1".into()), source_id: Some("Metering".into()), cache_type: None });
    let stored = Thing { public: false, ..thing(vec![tag("SN", "1"), num("V", 1.5)], Some("owner@example.org")) };
    assert_eq!(Thing::read(&stored.record(&key)), Some((key.clone(), stored)));
    assert!(key_text(&key).starts_with("rack@example.org\u{1f}imc1\u{1f}Metering\u{1f}"));
    assert_eq!(Thing::read(b"<thing/>"), None, "a record without its JIDs is left alone");
}

#[test]
fn a_claim_finds_the_one_unclaimed_thing_with_exactly_its_tags() {
    let owner = jid("owner@example.org");
    let mut things = BTreeMap::new();
    let lamp = (jid("lamp@example.org"), NodeInfo::default());
    things.insert(lamp.clone(), thing(vec![tag("SN", "1"), tag("KEY", "k1")], None));
    things.insert((jid("meter@example.org"), NodeInfo::default()), thing(vec![tag("SN", "2"), tag("KEY", "k2")], Some("someone@example.org")));
    assert!(matches!(claim_match(&things, &owner, &[tag("KEY", "k1"), tag("SN", "1")]), ClaimMatch::Unclaimed(key) if key == lamp), "order does not matter");
    assert!(matches!(claim_match(&things, &owner, &[tag("SN", "1")]), ClaimMatch::NotFound), "every tag, KEY included");
    assert!(matches!(claim_match(&things, &owner, &[tag("SN", "1"), tag("KEY", "k1"), tag("X", "")]), ClaimMatch::NotFound), "no tag more");
    assert!(matches!(claim_match(&things, &owner, &[tag("SN", "2"), tag("KEY", "k2")]), ClaimMatch::NotFound), "someone else's");
    things.get_mut(&lamp).expect("lamp").owner = Some(owner.clone());
    assert!(matches!(claim_match(&things, &owner, &[tag("SN", "1"), tag("KEY", "k1")]), ClaimMatch::AlreadyTheirs(key) if key == lamp));
    things.insert((jid("twin@example.org"), NodeInfo::default()), thing(vec![tag("SN", "3")], None));
    things.insert((jid("twin2@example.org"), NodeInfo::default()), thing(vec![tag("SN", "3")], None));
    assert!(matches!(claim_match(&things, &owner, &[tag("SN", "3")]), ClaimMatch::NotFound), "ambiguous");
}

#[test]
fn an_update_replaces_adds_and_removes_tags_within_the_limit() {
    let mut lamp = thing(vec![tag("SN", "1"), tag("KEY", "k1")], Some("owner@example.org"));
    assert!(lamp.update(vec![tag("KEY", ""), num("LAT", 59.3), tag("SN", "9")], 3));
    assert_eq!(lamp.tags, vec![num("LAT", 59.3), tag("SN", "9")]);
    assert!(!lamp.update(vec![tag("A", "a"), tag("B", "b")], 3), "past the limit nothing changes");
    assert_eq!(lamp.tags.len(), 2);
}

#[test]
fn searches_find_public_claimed_things_by_every_operator_and_page() {
    let mut things = BTreeMap::new();
    for (n, owner, public) in [(1, Some("o@example.org"), true), (2, Some("o@example.org"), true), (3, None, true), (4, Some("o@example.org"), false), (5, Some("o@example.org"), true)] {
        let mut listed = thing(vec![tag("MAN", "www.ktc.se"), tag("SN", &format!("3948{n}x")), num("V", f64::from(n)), tag("KEY", "secret")], owner);
        listed.public = public;
        things.insert((jid(&format!("t{n}@example.org")), NodeInfo::default()), listed);
    }
    let by = |operators: Vec<SearchOperator>, offset, max_count| Search { operators, offset, max_count };
    let man = SearchOperator::Str { name: "MAN".into(), test: Comparison::Eq("www.ktc.se".into()) };
    let (found, more) = search(&things, &by(vec![man.clone()], 0, None), 100);
    assert_eq!(found.iter().map(|hit| hit.jid.as_str()).collect::<Vec<_>>(), ["t1@example.org", "t2@example.org", "t5@example.org"], "not unclaimed, not private");
    assert!(!more && found.iter().all(|hit| hit.tags.iter().all(|tag| !tag.is_key())), "KEY is never shown");
    let (page, more) = search(&things, &by(vec![man.clone()], 1, Some(1)), 100);
    assert_eq!((page.len(), page[0].jid.as_str(), more), (1, "t2@example.org", true));
    let v = SearchOperator::Num { name: "V".into(), test: Comparison::Range { min: 2.0, min_included: true, max: 5.0, max_included: false, inside: true } };
    assert_eq!(search(&things, &by(vec![man.clone(), v], 0, None), 100).0.len(), 1);
    let mask = SearchOperator::Mask { name: "SN".into(), pattern: "3948*x".into(), wildcard: "*".into() };
    assert_eq!(search(&things, &by(vec![mask], 0, None), 100).0.len(), 3);
    let key = SearchOperator::Str { name: "KEY".into(), test: Comparison::Eq("secret".into()) };
    assert!(search(&things, &by(vec![key], 0, None), 100).0.is_empty(), "KEY is never searched");
    let wrong_type = SearchOperator::Num { name: "MAN".into(), test: Comparison::Eq(1.0) };
    assert!(search(&things, &by(vec![wrong_type], 0, None), 100).0.is_empty());
    assert_eq!(search(&things, &by(vec![man], 0, Some(50)), 2).0.len(), 2, "the registry's own cap");
}

#[test]
fn masks_match_runs_of_any_characters() {
    assert!(masked("394872348732948723", "39487*", "*"));
    assert!(masked("abc", "a*b*c", "*") && masked("abc", "*", "*") && masked("ab", "a*b", "*"));
    assert!(!masked("abc", "a*d", "*") && !masked("a", "a*a", "*") && !masked("abc", "abd", "*"));
}
