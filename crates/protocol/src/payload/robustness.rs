//! Whatever element tree a client sends, the parsers answer (a value or a refusal) and never
//! panic; and what they accept serialises back to the same value.

use proptest::prelude::*;
use proptest::sample::select;
use starling_xml::Element;

use super::*;
use crate::ns;

const NAMES: &[&str] = &[
    "query",
    "x",
    "field",
    "value",
    "option",
    "desc",
    "required",
    "reported",
    "item",
    "title",
    "instructions",
    "set",
    "max",
    "after",
    "before",
    "index",
    "first",
    "last",
    "count",
    "flip-page",
    "fin",
    "prefs",
    "always",
    "never",
    "jid",
    "metadata",
    "start",
    "end",
    "group",
    "identity",
    "feature",
    "username",
    "password",
    "remove",
    "registered",
    "validate",
    "other",
];
const NAMESPACES: &[&str] =
    &[ns::MAM, ns::DATA_FORMS, ns::RSM, ns::ROSTER, ns::DISCO_INFO, ns::DISCO_ITEMS, ns::REGISTER, "", "urn:example"];
const ATTRIBUTES: &[&str] = &[
    "type",
    "var",
    "label",
    "queryid",
    "node",
    "index",
    "jid",
    "subscription",
    "ask",
    "approved",
    "name",
    "default",
    "complete",
    "stable",
    "id",
    "timestamp",
    "category",
    "xml:lang",
];
const WORDS: &[&str] = &[
    "submit",
    "form",
    "result",
    "cancel",
    "FORM_TYPE",
    "with",
    "start",
    "end",
    "after-id",
    "before-id",
    "ids",
    "true",
    "false",
    "1",
    "0",
    "-1",
    "18446744073709551616",
    "remove",
    "both",
    "subscribe",
    "always",
    "roster",
    "urn:xmpp:mam:2",
    "a@b/c",
    "@",
    "2010-06-07T00:00:00Z",
    "hidden",
    "list-multi",
    " ",
    "5",
    "10",
    "1275868800000000",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![3 => select(WORDS).prop_map(str::to_owned), 1 => ".{0,12}"]
}

/// A field value: mostly one a MAM field could take, sometimes anything.
fn value() -> impl Strategy<Value = String> {
    const VALUES: &[&str] =
        &["a@b", "Juliet@Capulet.lit/balcony", "2010-06-07T00:00:00Z", "7", "1275868800000000", "", " "];
    prop_oneof![3 => select(VALUES).prop_map(str::to_owned), 1 => word()]
}

fn build(name: &str, ns: &str, attrs: Vec<(&str, String)>, children: Vec<Element>, text: Option<String>) -> Element {
    let mut element = Element::new(name, ns);
    for (attr, value) in attrs {
        element.set_attr(attr, value);
    }
    if let Some(text) = text {
        element.push_text(text);
    }
    for child in children {
        element.push_child(child);
    }
    element
}

fn tree() -> impl Strategy<Value = Element> {
    let attrs = || proptest::collection::vec((select(ATTRIBUTES), word()), 0..3);
    let leaf = (select(NAMES), select(NAMESPACES), attrs(), proptest::option::of(word()))
        .prop_map(|(name, ns, attrs, text)| build(name, ns, attrs, Vec::new(), text));
    leaf.prop_recursive(4, 48, 6, move |inner| {
        (
            select(NAMES),
            select(NAMESPACES),
            attrs(),
            proptest::collection::vec(inner, 0..6),
            proptest::option::of(word()),
        )
            .prop_map(|(name, ns, attrs, children, text)| build(name, ns, attrs, children, text))
    })
}

/// Mostly the namespace a child inherits, sometimes another.
fn ns_or(ns: &'static str) -> impl Strategy<Value = &'static str> {
    prop_oneof![8 => Just(ns), 1 => select(NAMESPACES)]
}

/// A child named from `names`, in (mostly) `ns`, with text and maybe attributes or noise inside.
fn child(names: &'static [&'static str], ns: &'static str) -> impl Strategy<Value = Element> {
    (
        select(names),
        ns_or(ns),
        proptest::collection::vec((select(ATTRIBUTES), word()), 0..2),
        proptest::option::weighted(0.8, word()),
    )
        .prop_map(|(name, ns, attrs, text)| build(name, ns, attrs, Vec::new(), text))
}

fn field() -> impl Strategy<Value = Element> {
    let inner = prop_oneof![
        6 => (ns_or(ns::DATA_FORMS), value()).prop_map(|(ns, text)| build("value", ns, Vec::new(), Vec::new(), Some(text))),
        1 => child(&["desc", "required", "option", "other"], ns::DATA_FORMS),
        1 => tree(),
    ];
    let var = prop_oneof![
        6 => select(&["with", "start", "end", "after-id", "before-id", "ids"][..]).prop_map(str::to_owned),
        1 => word(),
    ];
    let attrs = proptest::collection::vec((select(&["type", "label"][..]), word()), 0..2);
    (ns_or(ns::DATA_FORMS), proptest::option::weighted(0.9, var), attrs, proptest::collection::vec(inner, 0..4))
        .prop_map(|(ns, var, mut attrs, children)| {
            attrs.extend(var.map(|var| ("var", var)));
            build("field", ns, attrs, children, None)
        })
}

/// A MAM field with a value it accepts.
fn mam_field() -> impl Strategy<Value = Element> {
    const GOOD: &[(&str, &str)] = &[
        ("with", "juliet@capulet.lit"),
        ("with", "Juliet@Capulet.lit/balcony"),
        ("with", " "),
        ("start", "2010-06-07T00:00:00Z"),
        ("end", "2010-07-07T13:23:54.5+02:00"),
        ("after-id", "1275868800000000"),
        ("before-id", "7"),
        ("ids", "7"),
    ];
    select(GOOD).prop_map(|(var, value)| {
        build(
            "field",
            ns::DATA_FORMS,
            vec![("var", var.to_owned())],
            vec![Element::new("value", ns::DATA_FORMS).with_text(value)],
            None,
        )
    })
}

fn form() -> impl Strategy<Value = Element> {
    let inner = prop_oneof![
        6 => mam_field(),
        3 => field(),
        1 => child(&["title", "instructions"], ns::DATA_FORMS),
        1 => tree(),
    ];
    let form_type = prop_oneof![4 => Just("submit".to_owned()), 1 => word()];
    let form_type_field = (ns_or(ns::DATA_FORMS), word()).prop_map(|(ns, value)| {
        let value = if value.len() % 2 == 0 { ns::MAM.to_owned() } else { value };
        build(
            "field",
            ns,
            vec![("var", "FORM_TYPE".to_owned())],
            vec![Element::new("value", ns::DATA_FORMS).with_text(value)],
            None,
        )
    });
    (form_type, proptest::option::of(form_type_field), proptest::collection::vec(inner, 0..4)).prop_map(
        |(type_, form_type, mut fields)| {
            fields.splice(0..0, form_type);
            build("x", ns::DATA_FORMS, vec![("type", type_)], fields, None)
        },
    )
}

fn rsm() -> impl Strategy<Value = Element> {
    let inner =
        prop_oneof![8 => child(&["max", "after", "before", "index", "first", "last", "count"], ns::RSM), 1 => tree()];
    proptest::collection::vec(inner, 0..4).prop_map(|children| build("set", ns::RSM, Vec::new(), children, None))
}

fn mam_query() -> impl Strategy<Value = Element> {
    let inner = prop_oneof![3 => form(), 3 => rsm(), 1 => child(&["flip-page"], ns::MAM), 1 => tree()];
    (
        proptest::collection::vec((select(&["queryid", "node"][..]), word()), 0..2),
        proptest::collection::vec(inner, 0..4),
    )
        .prop_map(|(attrs, children)| build("query", ns::MAM, attrs, children, None))
}

/// A tree whose root is one a parser reads, so the parsers get past their first check.
fn payload() -> impl Strategy<Value = Element> {
    const ROOTS: &[(&str, &str)] = &[
        ("query", ns::ROSTER),
        ("query", ns::DISCO_INFO),
        ("query", ns::DISCO_ITEMS),
        ("query", ns::REGISTER),
        ("prefs", ns::MAM),
        ("fin", ns::MAM),
        ("metadata", ns::MAM),
    ];
    let other = (
        select(ROOTS),
        proptest::collection::vec((select(ATTRIBUTES), word()), 0..3),
        proptest::collection::vec(tree(), 0..6),
    )
        .prop_map(|((name, ns), attrs, children)| build(name, ns, attrs, children, None));
    prop_oneof![4 => mam_query(), 2 => form(), 2 => rsm(), 1 => field(), 2 => other]
}

fn round_trip<T>(element: &Element) -> Result<(), TestCaseError>
where
    T: for<'a> TryFrom<&'a Element, Error = PayloadError> + PartialEq + std::fmt::Debug,
    for<'a> &'a T: Into<Element>,
{
    if let Ok(value) = T::try_from(element) {
        let again: Element = (&value).into();
        prop_assert_eq!(T::try_from(&again), Ok(value));
    }
    Ok(())
}

proptest! {
    #[test]
    fn parsers_answer_and_round_trip(element in prop_oneof![4 => payload(), 1 => tree()]) {
        round_trip::<MamQuery>(&element)?;
        round_trip::<DataForm>(&element)?;
        round_trip::<RsmSet>(&element)?;
        round_trip::<Field>(&element)?;
        round_trip::<RosterQuery>(&element)?;
        round_trip::<DiscoInfoResult>(&element)?;
        round_trip::<DiscoItemsResult>(&element)?;
        round_trip::<RegisterQuery>(&element)?;
        round_trip::<MamPrefs>(&element)?;
        round_trip::<MamFin>(&element)?;
        round_trip::<MamMetadata>(&element)?;
        let _ = RosterQuery::parse_set(&element);
        let _ = MamQuery::parse_request::<String>(&element);
        if let Ok((query, filter)) = MamQuery::parse_request::<u64>(&element) {
            let set = query.set.unwrap_or_default();
            prop_assert!(set.after.is_none_or(|a| a.parse::<u64>().is_ok()));
            prop_assert!(set.before.flatten().is_none_or(|b| b.parse::<u64>().is_ok()));
            prop_assert_eq!(MamFilter::from_form(&filter.to_form()), Ok(filter));
        }
    }
}
