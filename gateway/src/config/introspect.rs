//! Which keys a config struct accepts, read from its `Deserialize` impl, so an
//! unknown key can be answered with the list of allowed ones.

use serde::de::{self, Deserialize, Visitor};

/// The field names `T` declares, or an empty list when `T` is not a plain struct.
pub(crate) fn field_names<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut fields = None;
    let _ = T::deserialize(Probe {
        fields: &mut fields,
    });
    fields.unwrap_or(&[])
}

struct Probe<'a> {
    fields: &'a mut Option<&'static [&'static str]>,
}

impl<'de> de::Deserializer<'de> for Probe<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("probe"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.fields = Some(fields);
        Err(de::Error::custom("probe"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Sample {
        alpha: u8,
        #[serde(rename = "beta_key")]
        beta: String,
    }

    #[test]
    fn reads_declared_fields() {
        assert_eq!(super::field_names::<Sample>(), ["alpha", "beta_key"]);
        assert!(super::field_names::<u8>().is_empty());
    }
}
