//! The macros that turn the contract table in `generated.rs` into Rust types.
//!
//! One invocation per kind keeps the table readable (it is reviewed as data) while every operation
//! still gets its own request struct, response struct and enum variant, so the engine is type-checked
//! against the wire contract.

/// Contract enums: literal names on the wire, the first value is the default (as .NET's value 0).
macro_rules! wire_enums {
    ($( $name:ident { $( $variant:ident = $wire:literal, )+ } )+) => {$(
        #[doc = concat!("The contract enum `", stringify!($name), "` (wire values are the literal names).")]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $(
                #[doc = concat!("`", $wire, "`")]
                $variant,
            )+
        }

        impl $name {
            /// Every value, in contract order.
            pub const VALUES: &'static [$name] = &[$($name::$variant),+];
        }

        impl Default for $name {
            fn default() -> Self {
                Self::VALUES[0]
            }
        }

        impl crate::pfwssdk::wire::WireEnum for $name {
            const NAME: &'static str = stringify!($name);
            const LITERALS: &'static [&'static str] = &[$($wire),+];
            fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire,)+ }
            }
            fn from_literal(s: &str) -> Option<Self> {
                match s { $($wire => Some($name::$variant),)+ _ => None }
            }
        }

        /// The enum where the request must say whether it was sent (`None`: omitted or nil);
        /// `tools/gen_contract_rs.py` names those inputs (`SENT_OR_NOT`).
        impl crate::pfwssdk::wire::Wire for Option<$name> {
            fn contract_type() -> std::borrow::Cow<'static, str> {
                <$name as crate::pfwssdk::wire::WireEnum>::NAME.into()
            }
            fn decode(
                element: Option<&crate::pfwssdk::soap::xml::Element>,
            ) -> Result<Self, crate::pfwssdk::wire::DecodeError> {
                crate::pfwssdk::wire::decode_sent(element)
            }
            fn encode(&self, name: &str, out: &mut String) {
                if let Some(value) = self {
                    crate::pfwssdk::wire::Wire::encode(value, name, out);
                }
            }
        }
    )+};
}

/// Contract complex types: a struct per type, fields in contract order.
macro_rules! complex_types {
    ($( $name:ident { $( $field:ident : $ty:ty = $wire:literal, )* } )+) => {$(
        #[doc = concat!("The contract type `", stringify!($name), "`.")]
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct $name {
            $(
                #[doc = concat!("`", $wire, "`")]
                pub $field: $ty,
            )*
        }

        impl crate::pfwssdk::wire::ComplexType for $name {
            const NAME: &'static str = stringify!($name);
            fn decode_fields(
                element: &crate::pfwssdk::soap::xml::Element,
            ) -> Result<Self, crate::pfwssdk::wire::DecodeError> {
                #[allow(unused_imports)] // empty types have no fields to decode
                use crate::pfwssdk::wire::{child, Wire};
                let _ = element;
                Ok(Self {
                    $( $field: <$ty as Wire>::decode(child(element, $wire)?)?, )*
                })
            }
            fn encode_fields(&self, out: &mut String) {
                #[allow(unused_imports)]
                use crate::pfwssdk::wire::Wire;
                let _ = out;
                $( Wire::encode(&self.$field, $wire, out); )*
            }
        }

        impl crate::pfwssdk::wire::ArrayItem for $name {
            const ITEM: &'static str = stringify!($name);
            fn decode_item(
                element: &crate::pfwssdk::soap::xml::Element,
            ) -> Result<Self, crate::pfwssdk::wire::DecodeError> {
                <Self as crate::pfwssdk::wire::ComplexType>::decode_fields(element)
            }
            fn encode_item(&self, out: &mut String) {
                crate::pfwssdk::wire::Wire::encode(&Some(self.clone()), stringify!($name), out);
            }
        }

        impl $name {
            /// The fields as the contract lists them: (element, contract type).
            pub fn field_specs() -> Vec<(&'static str, String)> {
                #[allow(unused_imports)]
                use crate::pfwssdk::wire::Wire;
                vec![$( ($wire, <$ty as Wire>::contract_type().into_owned()), )*]
            }
        }
    )+

        /// Every complex type of the contract: (name, fields as (element, contract type)).
        pub fn complex_type_specs() -> Vec<(&'static str, Vec<(&'static str, String)>)> {
            vec![$( (stringify!($name), $name::field_specs()), )+]
        }
    };
}

/// Evaluates to `Some($value)` when the field is called `$name`, else `None`.
macro_rules! __code_if {
    (error, error, $value:expr) => {
        Some($value)
    };
    (call_result, call_result, $value:expr) => {
        Some($value)
    };
    ($want:ident, $other:ident, $value:expr) => {
        None::<i32>
    };
}

/// Assigns `$value` to `$target` only when the field is called `error`.
macro_rules! __set_if_error {
    (error, $target:expr, $value:expr) => {
        $target = $value
    };
    ($other:ident, $target:expr, $value:expr) => {};
}

/// Operations: a request struct and a response struct per wire operation, plus the enums that
/// dispatch over them and the metadata table the WSDL is written from.
macro_rules! operations {
    ($( $op:ident (method $method:literal) -> $result:ty {
        in { $( $in_field:ident : $in_ty:ty = $in_wire:literal, )* }
        out { $( $out_field:ident : $out_ty:ty = $out_wire:literal, )* }
    } )+) => {
        /// One request struct per wire operation, named exactly as the operation element.
        #[allow(non_camel_case_types)] // wire names: `PfAuthUser3` and `PfAuthUser_3` are different operations
        pub mod request {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[doc = concat!("Input of `", stringify!($op), "`.")]
                #[derive(Debug, Clone, Default, PartialEq)]
                pub struct $op {
                    $(
                        #[doc = concat!("`", $in_wire, "`")]
                        pub $in_field: $in_ty,
                    )*
                }
            )+
        }

        /// One response struct per wire operation: `result` is `{Op}Result`, then the out-parameters.
        #[allow(non_camel_case_types)] // wire names, see `request`
        pub mod response {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[doc = concat!("Output of `", stringify!($op), "`.")]
                #[derive(Debug, Clone, Default, PartialEq)]
                pub struct $op {
                    #[doc = concat!("`", stringify!($op), "Result`")]
                    pub result: $result,
                    $(
                        #[doc = concat!("`", $out_wire, "`")]
                        pub $out_field: $out_ty,
                    )*
                }
            )+
        }

        /// Every wire operation.
        #[allow(non_camel_case_types)] // wire names, see `request`
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Operation {
            $(
                #[doc = concat!("`", stringify!($op), "`")]
                $op,
            )+
        }

        impl Operation {
            /// All operations in contract order.
            pub const ALL: &'static [Operation] = &[$(Operation::$op),+];

            /// The wire name (request element, SOAPAction suffix).
            pub fn name(self) -> &'static str {
                match self { $(Operation::$op => stringify!($op),)+ }
            }

            /// The operation with this wire name (case-sensitive, as ASMX).
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $(stringify!($op) => Some(Operation::$op),)+ _ => None }
            }

            /// The C# method name a generated proxy uses (overloads share it).
            pub fn method_name(self) -> &'static str {
                match self { $(Operation::$op => $method,)+ }
            }

            /// Names and contract types of the parameters, for the WSDL and the contract test.
            pub fn spec(self) -> crate::pfwssdk::OperationSpec {
                #[allow(unused_imports)]
                use crate::pfwssdk::wire::Wire;
                match self {
                    $(Operation::$op => crate::pfwssdk::OperationSpec {
                        name: stringify!($op),
                        method: $method,
                        result_type: <$result as Wire>::contract_type().into_owned(),
                        inputs: vec![$( ($in_wire, <$in_ty as Wire>::contract_type().into_owned()), )*],
                        outputs: vec![$( ($out_wire, <$out_ty as Wire>::contract_type().into_owned()), )*],
                    },)+
                }
            }
        }

        /// A decoded request.
        #[allow(non_camel_case_types)] // wire names, see `request`
        #[derive(Debug, Clone, PartialEq)]
        pub enum Request {
            $(
                #[doc = concat!("`", stringify!($op), "`")]
                $op(request::$op),
            )+
        }

        impl Request {
            /// The operation this request is for.
            pub fn operation(&self) -> Operation {
                match self { $(Request::$op(_) => Operation::$op,)+ }
            }

            /// Decodes the operation element's children into the typed request.
            pub fn decode(
                operation: Operation,
                element: &crate::pfwssdk::soap::xml::Element,
            ) -> Result<Self, crate::pfwssdk::wire::DecodeError> {
                #[allow(unused_imports)]
                use crate::pfwssdk::wire::{child, Wire};
                let _ = element;
                match operation {
                    $(Operation::$op => Ok(Request::$op(request::$op {
                        $( $in_field: <$in_ty as Wire>::decode(child(element, $in_wire)?)?, )*
                    })),)+
                }
            }
        }

        /// A response ready to encode.
        #[allow(non_camel_case_types)] // wire names, see `request`
        #[derive(Debug, Clone, PartialEq)]
        pub enum Response {
            $(
                #[doc = concat!("`", stringify!($op), "`")]
                $op(response::$op),
            )+
        }

        impl Response {
            /// The operation this response answers.
            pub fn operation(&self) -> Operation {
                match self { $(Response::$op(_) => Operation::$op,)+ }
            }

            /// The default response (`false`, defaults everywhere) with `error` set, for operations
            /// that report a business error (every operation except the two returning a string).
            pub fn failure(operation: Operation, error: Error) -> Self {
                let _ = &error;
                match operation {
                    $(Operation::$op => {
                        #[allow(unused_mut)]
                        let mut r = response::$op::default();
                        $( __set_if_error!($out_field, r.$out_field, error.clone()); )*
                        Response::$op(r)
                    })+
                }
            }

            /// A response whose result is `ok` (as `true`/`false`, or its text for the string-returning
            /// operations) with `error` set and every other output at its default.
            pub fn status(operation: Operation, ok: bool, error: Error) -> Self {
                let _ = &error;
                match operation {
                    $(Operation::$op => {
                        #[allow(unused_mut)]
                        let mut r = response::$op::default();
                        r.result = crate::pfwssdk::wire::FromBool::from_bool(ok);
                        $( __set_if_error!($out_field, r.$out_field, error.clone()); )*
                        Response::$op(r)
                    })+
                }
            }

            /// Result flag (for boolean results), `Error` code and `CallResult` code: the access log's
            /// outcome, read from the typed response rather than from the encoded XML.
            pub fn outcome(&self) -> (Option<bool>, Option<i32>, Option<i32>) {
                match self {
                    $(Response::$op(r) => {
                        let result = crate::pfwssdk::wire::FromBool::as_bool(&r.result);
                        let error: Option<i32> = None $( .or(__code_if!(error, $out_field, r.$out_field.code)) )*;
                        let call: Option<i32> = None $( .or(__code_if!(call_result, $out_field, r.$out_field.code)) )*;
                        (result, error, call)
                    })+
                }
            }

            /// Writes `<{Op}Response xmlns="…"><{Op}Result>…</{Op}Result>…</{Op}Response>`.
            pub fn encode(&self, out: &mut String) {
                #[allow(unused_imports)]
                use crate::pfwssdk::wire::Wire;
                match self {
                    $(Response::$op(r) => {
                        out.push_str(concat!("<", stringify!($op), "Response xmlns=\""));
                        out.push_str(crate::pfwssdk::NAMESPACE);
                        out.push_str("\">");
                        Wire::encode(&r.result, concat!(stringify!($op), "Result"), out);
                        $( Wire::encode(&r.$out_field, $out_wire, out); )*
                        out.push_str(concat!("</", stringify!($op), "Response>"));
                    })+
                }
            }
        }
    };
}
