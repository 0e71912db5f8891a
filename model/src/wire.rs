//! Wire names: the one spelling of each enum variant that every encoder
//! writes (JSON through serde, line protocol, MQTT topics, the HTTP view,
//! `/metrics` labels). [`wire_names!`] gives an enum `ALL`, `as_str` and
//! `FromStr` from one table; a test per enum checks that the table and the
//! serde names agree for every variant.

/// A name that is no variant's wire name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{name}`; expected one of: {expected}")]
pub struct UnknownName {
    /// The enum's name (`Priority`).
    pub what: &'static str,
    pub name: String,
    /// The wire names, comma-separated.
    pub expected: String,
}

/// Implements `ALL`, `as_str` and `FromStr` for an enum from its wire
/// names. The `match` in `as_str` is exhaustive, so a variant added to the
/// enum and not to the table does not compile.
macro_rules! wire_names {
    ($ty:ident { $($variant:ident => $name:literal,)* }) => {
        impl $ty {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),*];

            /// The wire name (the serde name).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)*
                }
            }
        }

        impl std::str::FromStr for $ty {
            type Err = $crate::wire::UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok($ty::$variant),)*
                    _ => Err($crate::wire::UnknownName {
                        what: stringify!($ty),
                        name: s.to_owned(),
                        expected: [$($name),*].join(", "),
                    }),
                }
            }
        }
    };
}
pub(crate) use wire_names;

#[cfg(test)]
mod tests {
    use std::fmt::Debug;
    use std::str::FromStr;

    use serde::Serialize;
    use serde::de::DeserializeOwned;

    use crate::{
        AlarmPhase, AlertKind, AlertState, Condition, DeviceKind, DeviceState, Priority,
        RecipientGroup, SilenceState, SubjectKind, TimeSource, Transition,
    };

    /// For every variant: serde writes `as_str`, reads it back, and
    /// `FromStr` agrees; an unknown name is refused with the list.
    fn check<T>(all: &[T], as_str: fn(T) -> &'static str)
    where
        T: Copy
            + PartialEq
            + Debug
            + Serialize
            + DeserializeOwned
            + FromStr<Err = super::UnknownName>,
    {
        assert!(!all.is_empty());
        for &v in all {
            let name = as_str(v);
            assert_eq!(
                serde_json::to_value(v).unwrap(),
                serde_json::Value::String(name.to_owned()),
                "{v:?}"
            );
            assert_eq!(serde_json::from_value::<T>(name.into()).unwrap(), v);
            assert_eq!(name.parse::<T>().unwrap(), v);
        }
        let err = "no-such-name".parse::<T>().unwrap_err();
        assert!(err.expected.contains(as_str(all[0])), "{err}");
    }

    #[test]
    fn priority() {
        check(Priority::ALL, Priority::as_str);
    }

    #[test]
    fn alert_kind() {
        check(AlertKind::ALL, AlertKind::as_str);
    }

    #[test]
    fn alert_state() {
        check(AlertState::ALL, AlertState::as_str);
    }

    #[test]
    fn transition() {
        check(Transition::ALL, Transition::as_str);
    }

    #[test]
    fn recipient_group() {
        check(RecipientGroup::ALL, RecipientGroup::as_str);
    }

    #[test]
    fn device_kind() {
        check(DeviceKind::ALL, DeviceKind::as_str);
    }

    #[test]
    fn device_state() {
        check(DeviceState::ALL, DeviceState::as_str);
    }

    #[test]
    fn alarm_phase() {
        check(AlarmPhase::ALL, AlarmPhase::as_str);
    }

    #[test]
    fn time_source() {
        check(TimeSource::ALL, TimeSource::as_str);
    }

    #[test]
    fn silence_state() {
        check(SilenceState::ALL, SilenceState::as_str);
    }

    #[test]
    fn subject_kind() {
        check(SubjectKind::ALL, SubjectKind::as_str);
    }

    #[test]
    fn condition() {
        check(Condition::ALL, Condition::as_str);
    }
}
