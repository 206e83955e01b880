//! Data Forms (XEP-0004): the `<x xmlns='jabber:x:data'/>` that MAM queries, registration, disco
//! extensions (XEP-0128) and many more carry.
//!
//! Parsing is as lenient as XEP-0004 lets a receiver be: a field type it does not know is read as
//! absent (text-single, §3.3), children it does not know (XEP-0122 `<validate/>`, XEP-0221 media)
//! are kept as elements, and only a missing or unknown form type is refused. What a form *means*
//! is the using protocol's business (e.g. [`super::mam::MamFilter`]).

use starling_xml::Element;

use super::{PayloadError, child_text, expect, text_element};
use crate::ns;

named_enum! {
    /// What a form is for (XEP-0004 §3.1).
    FormType {
        Form => "form",
        Submit => "submit",
        Cancel => "cancel",
        Result => "result",
    }
}

named_enum! {
    /// The data type of a field (XEP-0004 §3.3).
    FieldType {
        Boolean => "boolean",
        Fixed => "fixed",
        Hidden => "hidden",
        JidMulti => "jid-multi",
        JidSingle => "jid-single",
        ListMulti => "list-multi",
        ListSingle => "list-single",
        TextMulti => "text-multi",
        TextPrivate => "text-private",
        TextSingle => "text-single",
    }
}

/// One choice of a list field (XEP-0004 §3.2, `<option/>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldOption {
    pub label: Option<String>,
    pub value: String,
}

/// An `xs:boolean` field value (XEP-0004 §3.3): `1`/`true`, `0`/`false`.
pub fn parse_boolean(value: &str) -> Option<bool> {
    match value {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// A form field (XEP-0004 §3.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Field {
    /// Required for every type but `fixed` (§3.2); kept optional so such forms still parse.
    pub var: Option<String>,
    /// `None` when absent or unknown: XEP-0004 §3.3 then means text-single.
    pub type_: Option<FieldType>,
    pub label: Option<String>,
    pub required: bool,
    pub desc: Option<String>,
    pub values: Vec<String>,
    pub options: Vec<FieldOption>,
    /// Children in other namespaces, kept as they came (e.g. XEP-0122 `<validate/>`).
    pub extra: Vec<Element>,
}

impl Field {
    pub fn new(var: impl Into<String>, type_: FieldType) -> Field {
        Field { var: Some(var.into()), type_: Some(type_), ..Field::default() }
    }

    /// The hidden field naming the form's purpose (XEP-0068 `FORM_TYPE`, or another hidden one).
    pub fn hidden(var: impl Into<String>, value: impl Into<String>) -> Field {
        Field::new(var, FieldType::Hidden).with_value(value)
    }

    pub fn text_single(var: impl Into<String>) -> Field {
        Field::new(var, FieldType::TextSingle)
    }

    pub fn jid_single(var: impl Into<String>) -> Field {
        Field::new(var, FieldType::JidSingle)
    }

    pub fn list_multi(var: impl Into<String>) -> Field {
        Field::new(var, FieldType::ListMulti)
    }

    pub fn boolean(var: impl Into<String>) -> Field {
        Field::new(var, FieldType::Boolean)
    }

    pub fn with_value(mut self, value: impl Into<String>) -> Field {
        self.values.push(value.into());
        self
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Field {
        self.label = Some(label.into());
        self
    }

    pub fn with_option(mut self, label: Option<&str>, value: impl Into<String>) -> Field {
        self.options.push(FieldOption { label: label.map(str::to_owned), value: value.into() });
        self
    }

    pub fn with_extra(mut self, element: Element) -> Field {
        self.extra.push(element);
        self
    }

    pub fn required(mut self) -> Field {
        self.required = true;
        self
    }

    /// The type that applies: the declared one, else text-single (§3.3).
    pub fn effective_type(&self) -> FieldType {
        self.type_.unwrap_or(FieldType::TextSingle)
    }

    /// The first value, if any.
    pub fn value(&self) -> Option<&str> {
        self.values.first().map(String::as_str)
    }
}

impl TryFrom<&Element> for Field {
    type Error = PayloadError;

    fn try_from(element: &Element) -> Result<Field, PayloadError> {
        expect(element, "field", ns::DATA_FORMS)?;
        let mut field = Field {
            var: element.attr("var").map(str::to_owned),
            type_: element.attr("type").and_then(FieldType::parse),
            label: element.attr("label").map(str::to_owned),
            ..Field::default()
        };
        for child in element.children() {
            if child.ns() != ns::DATA_FORMS {
                field.extra.push(child.clone());
                continue;
            }
            match child.name() {
                "value" => field.values.push(child.text()),
                "required" => field.required = true,
                "desc" if field.desc.is_none() => field.desc = Some(child.text()),
                "option" => field.options.push(FieldOption {
                    label: child.attr("label").map(str::to_owned),
                    value: child_text(child, "value", ns::DATA_FORMS).unwrap_or_default(),
                }),
                _ => {}
            }
        }
        Ok(field)
    }
}

impl From<&Field> for Element {
    fn from(field: &Field) -> Element {
        let mut element = Element::new("field", ns::DATA_FORMS);
        if let Some(var) = &field.var {
            element.set_attr("var", var.as_str());
        }
        if let Some(type_) = field.type_ {
            element.set_attr("type", type_.as_str());
        }
        if let Some(label) = &field.label {
            element.set_attr("label", label.as_str());
        }
        if let Some(desc) = &field.desc {
            element.push_child(text_element("desc", ns::DATA_FORMS, desc));
        }
        if field.required {
            element.push_child(Element::new("required", ns::DATA_FORMS));
        }
        for value in &field.values {
            element.push_child(text_element("value", ns::DATA_FORMS, value));
        }
        for option in &field.options {
            let mut child = Element::new("option", ns::DATA_FORMS);
            if let Some(label) = &option.label {
                child.set_attr("label", label.as_str());
            }
            element.push_child(child.with_child(text_element("value", ns::DATA_FORMS, &option.value)));
        }
        for extra in &field.extra {
            element.push_child(extra.clone());
        }
        element
    }
}

impl From<Field> for Element {
    fn from(field: Field) -> Element {
        Element::from(&field)
    }
}

/// A data form (XEP-0004 §3), with the table of a multi-item result (§3.4) when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataForm {
    pub type_: FormType,
    pub title: Option<String>,
    pub instructions: Vec<String>,
    pub fields: Vec<Field>,
    /// The `<reported/>` header of a multi-item result (§3.4).
    pub reported: Option<Vec<Field>>,
    /// The `<item/>` rows of a multi-item result (§3.4).
    pub items: Vec<Vec<Field>>,
}

impl DataForm {
    pub fn new(type_: FormType, fields: Vec<Field>) -> DataForm {
        DataForm { type_, title: None, instructions: Vec::new(), fields, reported: None, items: Vec::new() }
    }

    /// A submitted form of single-valued fields, as `(var, value)`.
    pub fn submit(fields: &[(&str, &str)]) -> DataForm {
        let fields = fields.iter().map(|(var, value)| Field { var: Some((*var).to_owned()), values: vec![(*value).to_owned()], ..Field::default() }).collect();
        DataForm::new(FormType::Submit, fields)
    }

    /// The value of the `FORM_TYPE` field (XEP-0068), which names what the form is about.
    pub fn form_type(&self) -> Option<&str> {
        self.field("FORM_TYPE").and_then(Field::value)
    }

    /// The first field called `var`.
    pub fn field(&self, var: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.var.as_deref() == Some(var))
    }
}

fn fields_of(element: &Element) -> Result<Vec<Field>, PayloadError> {
    element.children().filter(|c| c.is("field", ns::DATA_FORMS)).map(Field::try_from).collect()
}

impl TryFrom<&Element> for DataForm {
    type Error = PayloadError;

    fn try_from(element: &Element) -> Result<DataForm, PayloadError> {
        expect(element, "x", ns::DATA_FORMS)?;
        let type_ = match element.attr("type") {
            Some(text) => FormType::parse(text).ok_or_else(|| PayloadError::invalid("form type", text))?,
            None => return Err(PayloadError::MissingAttribute { element: "x", attribute: "type" }),
        };
        let mut form = DataForm::new(type_, fields_of(element)?);
        for child in element.children().filter(|c| c.ns() == ns::DATA_FORMS) {
            match child.name() {
                "title" if form.title.is_none() => form.title = Some(child.text()),
                "instructions" => form.instructions.push(child.text()),
                "reported" if form.reported.is_none() => form.reported = Some(fields_of(child)?),
                "item" => form.items.push(fields_of(child)?),
                _ => {}
            }
        }
        Ok(form)
    }
}

impl From<&DataForm> for Element {
    fn from(form: &DataForm) -> Element {
        let mut element = Element::new("x", ns::DATA_FORMS).with_attr("type", form.type_.as_str());
        if let Some(title) = &form.title {
            element.push_child(text_element("title", ns::DATA_FORMS, title));
        }
        for instructions in &form.instructions {
            element.push_child(text_element("instructions", ns::DATA_FORMS, instructions));
        }
        for field in &form.fields {
            element.push_child(field.into());
        }
        let row = |name: &str, fields: &[Field]| {
            fields.iter().fold(Element::new(name, ns::DATA_FORMS), |row, field| row.with_child(field.into()))
        };
        if let Some(reported) = &form.reported {
            element.push_child(row("reported", reported));
        }
        for item in &form.items {
            element.push_child(row("item", item));
        }
        element
    }
}

impl From<DataForm> for Element {
    fn from(form: DataForm) -> Element {
        Element::from(&form)
    }
}

#[cfg(test)]
#[path = "data_form_tests.rs"]
mod tests;
