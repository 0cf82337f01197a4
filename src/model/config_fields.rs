//! The config's field list, written once. [`config_fields!`] takes the declaration of
//! [`Config`](super::Config) and derives from the same list the overrides struct, the field
//! names in SPEC order, and the per-field operations (apply, which are set, first conflict),
//! so adding a field is one edit.

/// A config field's value as an override gives it: most fields take the value itself, an
/// optional field (`num_classes`) is set by giving its inner value.
pub(crate) trait FieldValue<Given> {
    /// The field's value for an override `given`.
    fn from_given(given: Given) -> Self;

    /// The override that gives this value (`None` for an unset optional field).
    fn to_given(&self) -> Option<Given>;
}

impl<T: Clone> FieldValue<T> for T {
    fn from_given(given: T) -> T {
        given
    }

    fn to_given(&self) -> Option<T> {
        Some(self.clone())
    }
}

impl<T: Clone> FieldValue<T> for Option<T> {
    fn from_given(given: T) -> Option<T> {
        Some(given)
    }

    fn to_given(&self) -> Option<T> {
        self.clone()
    }
}

/// Declares `Config` (as written, attributes included; after each field's type: the type an
/// override gives, the builder method's name and the override's one-line help) and, from the
/// same field list: the `Config::with_*` builder methods,
/// `ConfigOverrides` (each field `Option<Given>`), `CONFIG_FIELDS`, `FIELD_COUNT`,
/// `ConfigOverrides::{apply_to, set_fields, first_conflict}`, and the overrides that give
/// exactly a config (`From<&Config>`).
macro_rules! config_fields {
    (
        $(#[$config_meta:meta])*
        pub struct Config {
            $(
                $(#[$field_meta:meta])*
                pub $field:ident: $ty:ty => $given:ty, $setter:ident, $help:literal,
            )*
        }
    ) => {
        $(#[$config_meta])*
        pub struct Config {
            $(
                $(#[$field_meta])*
                pub $field: $ty,
            )*
        }

        /// Config fields given explicitly (command-line flags, a service's settings); unset
        /// fields come from the weights file, or from SPEC's defaults. Each field is
        /// documented on [`Config`]; with the `cli` feature these are the command line's
        /// config flags (`--hidden-size`, …), with the help written next to the field.
        #[derive(Debug, Clone, Default, PartialEq)]
        #[cfg_attr(feature = "cli", derive(clap::Args))]
        #[cfg_attr(
            feature = "cli",
            command(next_help_heading = "Model config (unset: the weights file's metadata, else SPEC's defaults, which `linear-dit info` prints)")
        )]
        pub struct ConfigOverrides {
            $(
                #[doc = $help]
                #[cfg_attr(feature = "cli", arg(long))]
                pub $field: Option<$given>,
            )*
        }

        impl Config {
            $(
                #[doc = concat!("This config with [`Config::", stringify!($field), "`] set to `value`.")]
                pub fn $setter(mut self, value: $given) -> Self {
                    use $crate::model::config_fields::FieldValue;
                    self.$field = FieldValue::from_given(value);
                    self
                }
            )*
        }

        /// The number of config fields.
        pub const FIELD_COUNT: usize = [$(stringify!($field)),*].len();

        /// The config fields, in SPEC's order (the names of the `linear_dit.config` JSON).
        pub const CONFIG_FIELDS: [&str; FIELD_COUNT] = [$(stringify!($field)),*];

        impl From<&Config> for ConfigOverrides {
            /// Every field of `config` given (an unconditional model's `num_classes` unset).
            fn from(config: &Config) -> Self {
                use $crate::model::config_fields::FieldValue;
                ConfigOverrides {
                    $($field: FieldValue::to_given(&config.$field),)*
                }
            }
        }

        impl ConfigOverrides {
            /// `base` with every set field replaced.
            pub fn apply_to(&self, base: Config) -> Config {
                use $crate::model::config_fields::FieldValue;
                Config {
                    $(
                        $field: match self.$field.clone() {
                            Some(given) => FieldValue::from_given(given),
                            None => base.$field,
                        },
                    )*
                }
            }

            /// Whether each field is set, in [`CONFIG_FIELDS`] order.
            pub fn set_fields(&self) -> [bool; FIELD_COUNT] {
                [$(self.$field.is_some()),*]
            }

            /// The first set field whose value differs from `config`, as (field, given,
            /// actual).
            pub fn first_conflict(&self, config: &Config) -> Option<(&'static str, String, String)> {
                use $crate::model::config_fields::FieldValue;
                $(
                    if let Some(given) = self.$field.clone() {
                        let given: $ty = FieldValue::from_given(given);
                        if given != config.$field {
                            return Some((
                                stringify!($field),
                                format!("{given:?}"),
                                format!("{:?}", config.$field),
                            ));
                        }
                    }
                )*
                None
            }
        }
    };
}

pub(crate) use config_fields;
