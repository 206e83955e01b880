//! In-Band Registration (XEP-0077): `<query xmlns='jabber:iq:register'/>` for registration,
//! password change and cancellation, with the legacy fields this server uses and an optional
//! data form (§3.4).

use starling_xml::Element;

use super::data_form::DataForm;
use super::{PayloadError, child_text, expect, text_element};
use crate::ns;

/// A registration query (XEP-0077 §3). The text fields are `Some("")` for an empty element, which
/// in a get result asks for that field (§3.1) and in a set is an empty value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegisterQuery {
    pub instructions: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub email: Option<String>,
    /// `<remove/>`: cancel the registration (§3.2).
    pub remove: bool,
    /// `<registered/>`: the entity is already registered (§3.1).
    pub registered: bool,
    pub form: Option<DataForm>,
}

impl TryFrom<&Element> for RegisterQuery {
    type Error = PayloadError;

    /// Refuses a `<remove/>` that is not the only child (§3.2, `bad-request`) and a malformed
    /// data form.
    fn try_from(element: &Element) -> Result<RegisterQuery, PayloadError> {
        expect(element, "query", ns::REGISTER)?;
        let remove = element.get_child("remove", ns::REGISTER).is_some();
        if remove && element.children().count() > 1 {
            return Err(PayloadError::invalid("registration removal", "<remove/> is not the only child"));
        }
        let text = |name| child_text(element, name, ns::REGISTER);
        Ok(RegisterQuery {
            instructions: text("instructions"),
            username: text("username"),
            password: text("password"),
            email: text("email"),
            remove,
            registered: element.get_child("registered", ns::REGISTER).is_some(),
            form: element.get_child("x", ns::DATA_FORMS).map(DataForm::try_from).transpose()?,
        })
    }
}

impl From<&RegisterQuery> for Element {
    fn from(query: &RegisterQuery) -> Element {
        let mut element = Element::new("query", ns::REGISTER);
        if query.registered {
            element.push_child(Element::new("registered", ns::REGISTER));
        }
        for (name, value) in [
            ("instructions", &query.instructions),
            ("username", &query.username),
            ("password", &query.password),
            ("email", &query.email),
        ] {
            if let Some(value) = value {
                element.push_child(text_element(name, ns::REGISTER, value));
            }
        }
        if query.remove {
            element.push_child(Element::new("remove", ns::REGISTER));
        }
        if let Some(form) = &query.form {
            element.push_child(form.into());
        }
        element
    }
}

impl From<RegisterQuery> for Element {
    fn from(query: RegisterQuery) -> Element {
        Element::from(&query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StanzaErrorCondition;
    use crate::payload::data_form::FormType;
    use crate::payload::test_support::{reparse, xml};

    fn round_trips(query: &RegisterQuery) {
        assert_eq!(RegisterQuery::try_from(&reparse(&Element::from(query))).as_ref(), Ok(query));
    }

    /// XEP-0077 §3.1–§3.3 examples.
    #[test]
    fn reads_the_xep_0077_examples() {
        let fields = RegisterQuery::try_from(&xml("<query xmlns='jabber:iq:register'>
            <instructions>
              Choose a username and password for use with this service.
              Please also provide your email address.
            </instructions>
            <username/>
            <password/>
            <email/>
          </query>"))
        .expect("fields");
        assert_eq!((fields.username.as_deref(), fields.email.as_deref()), (Some(""), Some("")));
        assert!(fields.instructions.as_deref().is_some_and(|i| i.contains("Choose a username")));
        round_trips(&fields);

        let current = RegisterQuery::try_from(&xml("<query xmlns='jabber:iq:register'>
            <registered/>
            <username>juliet</username>
            <password>R0m30</password>
            <email>juliet@capulet.com</email>
          </query>"))
        .expect("registered");
        assert!(current.registered && current.password.as_deref() == Some("R0m30"));
        round_trips(&current);

        let change = RegisterQuery::try_from(&xml(
            "<query xmlns='jabber:iq:register'><username>bill</username><password>newpass</password></query>",
        ))
        .expect("password change");
        assert_eq!((change.username.as_deref(), change.remove), (Some("bill"), false));
        round_trips(&change);

        let cancel =
            RegisterQuery::try_from(&xml("<query xmlns='jabber:iq:register'>\n<remove/>\n</query>")).expect("cancel");
        assert_eq!(cancel, RegisterQuery { remove: true, ..RegisterQuery::default() });
        round_trips(&cancel);

        // What the edge answers a get with today.
        let edge = RegisterQuery {
            instructions: Some("Choose a username and password.".into()),
            username: Some(String::new()),
            password: Some(String::new()),
            ..RegisterQuery::default()
        };
        assert_eq!(
            Element::from(&edge).to_bytes(),
            b"<query xmlns='jabber:iq:register'><instructions>Choose a username and password.</instructions><username/><password/></query>"
        );
    }

    /// XEP-0077 §3.4, "User Submits Registration Form".
    #[test]
    fn reads_the_registration_form() {
        let submitted = RegisterQuery::try_from(&xml("<query xmlns='jabber:iq:register'>
            <x xmlns='jabber:x:data' type='submit'>
              <field type='hidden' var='FORM_TYPE'><value>jabber:iq:register</value></field>
              <field type='text-single' label='Given Name' var='first'><value>Juliet</value></field>
              <field type='list-single' label='Gender' var='x-gender'><value>F</value></field>
            </x>
          </query>"))
        .expect("form");
        let form = submitted.form.as_ref().expect("form");
        assert_eq!((form.type_, form.form_type()), (FormType::Submit, Some(ns::REGISTER)));
        round_trips(&submitted);
    }

    #[test]
    fn refusals() {
        let bad = |children: &str| {
            RegisterQuery::try_from(&xml(&format!("<query xmlns='jabber:iq:register'>{children}</query>")))
                .map_err(|e| e.condition())
        };
        assert_eq!(
            bad("<remove/><username>bill</username>"),
            Err(StanzaErrorCondition::BadRequest),
            "§3.2: remove alone"
        );
        assert_eq!(bad("<x xmlns='jabber:x:data' type='bogus'/>"), Err(StanzaErrorCondition::BadRequest));
    }
}
