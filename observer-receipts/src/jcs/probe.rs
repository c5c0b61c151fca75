//! The check [`super::to_canonical`] runs before serde_json sees a value:
//! no float may be NaN or infinite.
use std::fmt;

use serde::ser::{self, Serialize};

/// Walks a serializable value only to find non-finite floats, which
/// `serde_json::to_value` would turn into `null` without a word. It builds
/// nothing and allocates nothing.
pub(super) struct FiniteFloatProbe;

#[derive(Debug)]
pub(super) enum ProbeError {
    NonFinite(f64),
    Custom(String),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NonFinite(value) => write!(f, "non-finite number {value}"),
            Self::Custom(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ProbeError {}

impl ser::Error for ProbeError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Self::Custom(message.to_string())
    }
}

fn probe_float(value: f64) -> Result<(), ProbeError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(ProbeError::NonFinite(value))
    }
}

macro_rules! probe_accepts {
    ($($method:ident($type:ty)),* $(,)?) => {
        $(fn $method(self, _: $type) -> Result<(), ProbeError> { Ok(()) })*
    };
}

impl ser::Serializer for FiniteFloatProbe {
    type Ok = ();
    type Error = ProbeError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    probe_accepts!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
    );

    fn serialize_f32(self, value: f32) -> Result<(), ProbeError> {
        probe_float(f64::from(value))
    }

    fn serialize_f64(self, value: f64) -> Result<(), ProbeError> {
        probe_float(value)
    }

    fn serialize_none(self) -> Result<(), ProbeError> {
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), ProbeError> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), ProbeError> {
        Ok(())
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), ProbeError> {
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), ProbeError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), ProbeError> {
        value.serialize(self)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self, ProbeError> {
        Ok(self)
    }

    fn serialize_tuple(self, _: usize) -> Result<Self, ProbeError> {
        Ok(self)
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, ProbeError> {
        Ok(self)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, ProbeError> {
        Ok(self)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self, ProbeError> {
        Ok(self)
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, ProbeError> {
        Ok(self)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, ProbeError> {
        Ok(self)
    }

    /// Display-only values (timestamps, addresses) become strings, which
    /// cannot hold a float; skip formatting them.
    fn collect_str<T: fmt::Display + ?Sized>(self, _: &T) -> Result<(), ProbeError> {
        Ok(())
    }
}

macro_rules! probe_compound {
    ($($trait:ident :: $method:ident),* $(,)?) => {
        $(impl ser::$trait for FiniteFloatProbe {
            type Ok = ();
            type Error = ProbeError;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ProbeError> {
                value.serialize(FiniteFloatProbe)
            }

            fn end(self) -> Result<(), ProbeError> {
                Ok(())
            }
        })*
    };
}

probe_compound!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

macro_rules! probe_fields {
    ($($trait:ident),* $(,)?) => {
        $(impl ser::$trait for FiniteFloatProbe {
            type Ok = ();
            type Error = ProbeError;

            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                _: &'static str,
                value: &T,
            ) -> Result<(), ProbeError> {
                value.serialize(FiniteFloatProbe)
            }

            fn end(self) -> Result<(), ProbeError> {
                Ok(())
            }
        })*
    };
}

probe_fields!(SerializeStruct, SerializeStructVariant);

impl ser::SerializeMap for FiniteFloatProbe {
    type Ok = ();
    type Error = ProbeError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), ProbeError> {
        key.serialize(FiniteFloatProbe)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ProbeError> {
        value.serialize(FiniteFloatProbe)
    }

    fn end(self) -> Result<(), ProbeError> {
        Ok(())
    }
}
