//! Which zones a contact is in: the flow's ordered `timezone` sources, tried
//! in turn (a contact field, the number's zones, a literal zone).

use std::str::FromStr;

use chrono_tz::Tz;

use super::phone::Number;
use crate::ir::ZoneSource;

/// Why a contact has no zone; the contact is rejected with this reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ZoneError {
    /// The field holds a name that is not an IANA zone.
    UnknownZone { field: String, value: String },
    /// No source gave a zone.
    Undetermined,
}

impl std::fmt::Display for ZoneError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ZoneError::UnknownZone { field, value } => {
                let value = crate::contacts::printable(value);
                write!(f, "`{field}` holds \"{value}\", which is not a time zone")
            }
            ZoneError::Undetermined => f.write_str(
                "no time zone: no source of the flow's `timezone` line gives one for this contact",
            ),
        }
    }
}

/// The candidate zones of a contact; a dial may start only when it is
/// callable in every one of them. `field` reads a contact field's text.
pub fn resolve<'a>(
    sources: &[ZoneSource],
    field: impl Fn(&str) -> Option<&'a str>,
    number: Option<&Number>,
) -> Result<Vec<Tz>, ZoneError> {
    for source in sources {
        match source {
            ZoneSource::Field(name) => {
                if let Some(value) = field(name).map(str::trim).filter(|v| !v.is_empty()) {
                    return match Tz::from_str(value) {
                        Ok(tz) => Ok(vec![tz]),
                        Err(_) => Err(ZoneError::UnknownZone {
                            field: name.clone(),
                            value: value.to_string(),
                        }),
                    };
                }
            }
            ZoneSource::Phone => {
                if let Some(zones) = number.and_then(Number::useful_zones) {
                    return Ok(zones);
                }
            }
            ZoneSource::Zone(name) => {
                if let Ok(tz) = Tz::from_str(name) {
                    return Ok(vec![tz]);
                }
            }
        }
    }
    Err(ZoneError::Undetermined)
}
