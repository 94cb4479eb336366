//! What separates calendars from address books: URL schemes, collection types, media types and
//! the bodies that create collections. Everything else is shared.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// CalDAV calendars and task lists (VEVENT, VTODO, VJOURNAL).
    Calendars,
    /// CardDAV address books (vCard 3 and 4).
    Contacts,
}

impl Kind {
    /// `calendars` / `contacts`: the command name, and part of the state file's name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Calendars => "calendars",
            Kind::Contacts => "contacts",
        }
    }

    /// The URL schemes a location of this kind may use, with the HTTP scheme each stands for.
    pub fn schemes(self) -> [(&'static str, &'static str); 2] {
        match self {
            Kind::Calendars => [("caldav://", "http://"), ("caldavs://", "https://")],
            Kind::Contacts => [("carddav://", "http://"), ("carddavs://", "https://")],
        }
    }

    /// The `resourcetype` child that marks a collection of this kind.
    pub fn collection_type(self) -> &'static str {
        match self {
            Kind::Calendars => "calendar",
            Kind::Contacts => "addressbook",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Kind::Calendars => "text/calendar; charset=utf-8",
            Kind::Contacts => "text/vcard; charset=utf-8",
        }
    }

    /// The method creating a collection of this kind (RFC 4791 §5.3.1, RFC 5689 for CardDAV).
    pub fn create_method(self) -> &'static str {
        match self {
            Kind::Calendars => "MKCALENDAR",
            Kind::Contacts => "MKCOL",
        }
    }
}
