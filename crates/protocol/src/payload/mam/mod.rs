//! Message Archive Management (XEP-0313, `urn:xmpp:mam:2`): queries with their form and XEP-0059
//! paging, the `<fin/>` that ends a result, archive metadata (§5) and preferences (XEP-0441).
//!
//! [`MamQuery::try_from`] reads a query as data (any form type, any RSM), e.g. the form a server
//! advertises. [`MamQuery::parse_request`] reads one as an archive answers it, with the conditions
//! XEP-0313 names, checked in document order — the form's fields first, then the RSM set — so the
//! first fault decides the answer.

use std::str::FromStr;

use starling_xml::Element;

use super::data_form::{DataForm, Field, FormType};
use super::rsm::RsmSet;
use super::{PayloadError, expect, parse_count};
use crate::datetime;
use crate::jid::Jid;
use crate::ns;

mod prefs;
mod results;

pub use prefs::{MamDefault, MamPrefs};
pub use results::{ArchiveEnd, MamFin, MamMetadata};

/// An archive query (XEP-0313 §4): an optional filter form (§4.1), paging (§4.3), and whether the
/// page is sent newest first (`<flip-page/>`, §4.3.4, advertised as `urn:xmpp:mam:2#extended`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MamQuery {
    /// `queryid`, echoed in every result so the client can match them (§4.2).
    pub query_id: Option<String>,
    /// A pubsub node whose archive is queried (XEP-0442); a user archive has none.
    pub node: Option<String>,
    pub form: Option<DataForm>,
    pub set: Option<RsmSet>,
    pub flip_page: bool,
}

/// What the filter form of a query asks for (XEP-0313 §4.1), archive ids read as `Id`.
///
/// Times are microseconds since the Unix epoch. A field given twice narrows like the server
/// always did: the latest `start`, the earliest `end`; for `with`, `after-id`, `before-id` and
/// `ids` the last one counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MamFilter<Id = String> {
    /// `with`, as given: a bare JID matches every resource, a full JID only that one (§4.1.1).
    pub with: Option<Jid>,
    /// `start`: messages at or after this time (§4.1.2).
    pub start: Option<u64>,
    /// `end`: messages at or before this time (§4.1.2).
    pub end: Option<u64>,
    /// `after-id`: messages after this one (§4.1.3).
    pub after_id: Option<Id>,
    /// `before-id`: messages before this one (§4.1.3).
    pub before_id: Option<Id>,
    /// `ids`: exactly these messages (§4.1.4).
    pub ids: Option<Vec<Id>>,
}

impl<Id> Default for MamFilter<Id> {
    fn default() -> MamFilter<Id> {
        MamFilter { with: None, start: None, end: None, after_id: None, before_id: None, ids: None }
    }
}

fn archive_id<Id: FromStr>(text: &str) -> Result<Id, PayloadError> {
    text.parse().map_err(|_| PayloadError::UnknownItem(text.to_owned()))
}

impl<Id: FromStr> MamFilter<Id> {
    /// Reads a query form, refusing as XEP-0313 says and in field order: a form that is not a
    /// submission, a `FORM_TYPE` other than `urn:xmpp:mam:2`, more than one value for a
    /// single-valued field, or a bad date (`bad-request`); a malformed `with` (`jid-malformed`); an
    /// id that does not parse as `Id` (`item-not-found`: no such message can exist); a field this
    /// server does not know, a field without `var` included (`feature-not-implemented`, §4.1.5).
    /// A missing `FORM_TYPE` is accepted, as are empty values (an unset field).
    pub fn from_form(form: &DataForm) -> Result<MamFilter<Id>, PayloadError> {
        if form.type_ != FormType::Submit {
            return Err(PayloadError::invalid("MAM query form type", form.type_.as_str()));
        }
        let mut filter = MamFilter::default();
        for field in &form.fields {
            let var = field.var.as_deref().unwrap_or_default();
            let single = || match field.values.as_slice() {
                [] => Ok(None),
                [one] if one.trim().is_empty() => Ok(None),
                [one] => Ok(Some(one.trim())),
                [_, second, ..] => {
                    Err(PayloadError::Duplicate { what: "value of a single-valued MAM field", value: second.clone() })
                }
            };
            let date = |text: &str| datetime::parse(text).ok_or_else(|| PayloadError::invalid("MAM date", text));
            match var {
                "FORM_TYPE" => {
                    let form_type = single()?;
                    if form_type != Some(ns::MAM) {
                        return Err(PayloadError::invalid("MAM FORM_TYPE", form_type.unwrap_or_default()));
                    }
                }
                "with" => {
                    if let Some(with) = single()? {
                        filter.with =
                            Some(Jid::new(with).map_err(|_| PayloadError::MalformedJid {
                                what: "MAM with",
                                value: with.to_owned(),
                            })?);
                    }
                }
                "start" => {
                    if let Some(start) = single()? {
                        let start = date(start)?;
                        filter.start = Some(filter.start.map_or(start, |s| s.max(start)));
                    }
                }
                "end" => {
                    if let Some(end) = single()? {
                        let end = date(end)?;
                        filter.end = Some(filter.end.map_or(end, |e| e.min(end)));
                    }
                }
                "after-id" => {
                    if let Some(id) = single()? {
                        filter.after_id = Some(archive_id(id)?);
                    }
                }
                "before-id" => {
                    if let Some(id) = single()? {
                        filter.before_id = Some(archive_id(id)?);
                    }
                }
                "ids" => {
                    filter.ids = Some(field.values.iter().map(|v| archive_id(v.trim())).collect::<Result<_, _>>()?)
                }
                other => return Err(PayloadError::Unsupported(format!("MAM query field {other:?}"))),
            }
        }
        Ok(filter)
    }
}

impl<Id: ToString> MamFilter<Id> {
    /// The submission form asking for this filter.
    pub fn to_form(&self) -> DataForm {
        let mut fields = vec![Field::hidden("FORM_TYPE", ns::MAM)];
        let mut field = |var: &str, values: Vec<String>| {
            fields.push(Field { var: Some(var.to_owned()), values, ..Field::default() });
        };
        if let Some(with) = &self.with {
            field("with", vec![with.to_string()]);
        }
        if let Some(start) = self.start {
            field("start", vec![datetime::format(start)]);
        }
        if let Some(end) = self.end {
            field("end", vec![datetime::format(end)]);
        }
        if let Some(id) = &self.after_id {
            field("after-id", vec![id.to_string()]);
        }
        if let Some(id) = &self.before_id {
            field("before-id", vec![id.to_string()]);
        }
        if let Some(ids) = &self.ids {
            field("ids", ids.iter().map(ToString::to_string).collect());
        }
        DataForm::new(FormType::Submit, fields)
    }
}

impl MamQuery {
    /// The query form a server answers a `get` with (§4.1.5): the fields it accepts.
    pub fn form_template() -> MamQuery {
        let validate = Element::new("validate", ns::DATA_FORMS_VALIDATE)
            .with_attr("datatype", "xs:string")
            .with_child(Element::new("open", ns::DATA_FORMS_VALIDATE));
        let fields = vec![
            Field::hidden("FORM_TYPE", ns::MAM),
            Field::jid_single("with"),
            Field::text_single("start"),
            Field::text_single("end"),
            Field::text_single("before-id"),
            Field::text_single("after-id"),
            Field::list_multi("ids").with_extra(validate),
        ];
        MamQuery { form: Some(DataForm::new(FormType::Form, fields)), ..MamQuery::default() }
    }

    /// The filter of this query's form ([`MamFilter::from_form`]); no form is no filter.
    pub fn filter<Id: FromStr>(&self) -> Result<MamFilter<Id>, PayloadError> {
        self.form.as_ref().map_or_else(|| Ok(MamFilter::default()), MamFilter::from_form)
    }

    /// Reads a query as an archive answers it (archive ids are `Id`): the form as
    /// [`MamFilter::from_form`] checks it, then each RSM child in order — a `max` that is not a
    /// count (`bad-request`), an `after` or non-empty `before` that is not an `Id`
    /// (`item-not-found`), `<index/>` (`feature-not-implemented`: ids page, positions do not),
    /// anything else (`bad-request`). When this succeeds, `set.after` and `set.before` parse as
    /// `Id`. `node` is returned, not judged: whether a node's archive exists is the caller's to say.
    pub fn parse_request<Id: FromStr>(element: &Element) -> Result<(MamQuery, MamFilter<Id>), PayloadError> {
        expect(element, "query", ns::MAM)?;
        let form = element.get_child("x", ns::DATA_FORMS).map(DataForm::try_from).transpose()?;
        let filter = form.as_ref().map_or_else(|| Ok(MamFilter::default()), MamFilter::from_form)?;
        if let Some(set) = element.get_child("set", ns::RSM) {
            for child in set.children() {
                let text = child.text();
                match child.name() {
                    "max" => {
                        parse_count(&text, "RSM max")?;
                    }
                    "before" if text.trim().is_empty() => {}
                    "after" | "before" => {
                        archive_id::<Id>(text.trim())?;
                    }
                    "index" => return Err(PayloadError::Unsupported("RSM <index/> in a MAM query".to_owned())),
                    other => return Err(PayloadError::invalid("RSM element in a MAM query", other)),
                }
            }
        }
        Ok((MamQuery { form, ..MamQuery::structure(element)? }, filter))
    }

    /// Everything but the form, read leniently.
    fn structure(element: &Element) -> Result<MamQuery, PayloadError> {
        Ok(MamQuery {
            query_id: element.attr("queryid").map(str::to_owned),
            node: element.attr("node").map(str::to_owned),
            form: None,
            set: element.get_child("set", ns::RSM).map(RsmSet::try_from).transpose()?,
            flip_page: element.get_child("flip-page", ns::MAM).is_some(),
        })
    }
}

impl TryFrom<&Element> for MamQuery {
    type Error = PayloadError;

    /// Reads the query as data: any well-formed form and RSM set. See [`MamQuery::parse_request`]
    /// for a query to answer.
    fn try_from(element: &Element) -> Result<MamQuery, PayloadError> {
        expect(element, "query", ns::MAM)?;
        let form = element.get_child("x", ns::DATA_FORMS).map(DataForm::try_from).transpose()?;
        Ok(MamQuery { form, ..MamQuery::structure(element)? })
    }
}

impl From<&MamQuery> for Element {
    fn from(query: &MamQuery) -> Element {
        let mut element = Element::new("query", ns::MAM);
        if let Some(query_id) = &query.query_id {
            element.set_attr("queryid", query_id.as_str());
        }
        if let Some(node) = &query.node {
            element.set_attr("node", node.as_str());
        }
        if let Some(form) = &query.form {
            element.push_child(form.into());
        }
        if let Some(set) = &query.set {
            element.push_child(set.into());
        }
        if query.flip_page {
            element.push_child(Element::new("flip-page", ns::MAM));
        }
        element
    }
}

impl From<MamQuery> for Element {
    fn from(query: MamQuery) -> Element {
        Element::from(&query)
    }
}

#[cfg(test)]
mod tests;
