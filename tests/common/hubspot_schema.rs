//! The request bodies HubSpot's published OpenAPI specs ask for
//! (`HubSpot/HubSpot-public-api-spec-collection`: CRM Companies v3, Properties v3,
//! Lists v3), written down as shapes: which keys each body must carry and what type
//! each value is. The emulator refuses a body that does not fit with HubSpot's own
//! 400 `VALIDATION_ERROR`, so a request that drifts from the spec fails the tests.
//!
//! Only what the specs require is checked: required keys and value types. Keys the spec
//! does not name are let through, as HubSpot does.

#![allow(dead_code)]

use serde_json::Value;

pub enum Shape {
    Str,
    Int,
    Bool,
    List(&'static Shape),
    /// An object with free keys (`additionalProperties`), each value of one shape.
    Map(&'static Shape),
    /// A named schema: (key, required, shape).
    Object(&'static str, &'static [(&'static str, bool, Shape)]),
}

use Shape::*;

const STRINGS: Shape = List(&Str);

/// `SimplePublicObjectId`.
const OBJECT_ID: Shape = Object("SimplePublicObjectId", &[("id", true, Str)]);

/// `PublicAssociationsForObject` with its `AssociationSpec`s.
const ASSOCIATION: Shape = Object(
    "PublicAssociationsForObject",
    &[
        ("to", true, Object("PublicObjectId", &[("id", true, Str)])),
        (
            "types",
            true,
            List(&Object("AssociationSpec", &[("associationCategory", true, Str), ("associationTypeId", true, Int)])),
        ),
    ],
);

/// `POST /crm/v3/objects/companies/batch/create`: `BatchInputSimplePublicObjectBatchInputForCreate`.
pub const BATCH_CREATE: Shape = Object(
    "BatchInputSimplePublicObjectBatchInputForCreate",
    &[(
        "inputs",
        true,
        List(&Object(
            "SimplePublicObjectBatchInputForCreate",
            &[("associations", true, List(&ASSOCIATION)), ("properties", true, Map(&Str)), ("objectWriteTraceId", false, Str)],
        )),
    )],
);

/// `POST /crm/v3/objects/companies/batch/update`: `BatchInputSimplePublicObjectBatchInput`.
pub const BATCH_UPDATE: Shape = Object(
    "BatchInputSimplePublicObjectBatchInput",
    &[(
        "inputs",
        true,
        List(&Object(
            "SimplePublicObjectBatchInput",
            &[("id", true, Str), ("properties", true, Map(&Str)), ("idProperty", false, Str), ("objectWriteTraceId", false, Str)],
        )),
    )],
);

/// `POST /crm/v3/objects/companies/batch/read`: `BatchReadInputSimplePublicObjectId`.
pub const BATCH_READ: Shape = Object(
    "BatchReadInputSimplePublicObjectId",
    &[("inputs", true, List(&OBJECT_ID)), ("properties", true, STRINGS), ("propertiesWithHistory", true, STRINGS), ("idProperty", false, Str)],
);

/// `POST /crm/v3/objects/companies/search`: `PublicObjectSearchRequest` (the spec
/// requires `after` and types `sorts` as strings).
pub const SEARCH: Shape = Object(
    "PublicObjectSearchRequest",
    &[
        ("after", true, Str),
        (
            "filterGroups",
            true,
            List(&Object(
                "FilterGroup",
                &[(
                    "filters",
                    true,
                    List(&Object(
                        "Filter",
                        &[("operator", true, Str), ("propertyName", true, Str), ("value", false, Str), ("values", false, STRINGS), ("highValue", false, Str)],
                    )),
                )],
            )),
        ),
        ("limit", true, Int),
        ("properties", true, STRINGS),
        ("sorts", true, STRINGS),
        ("query", false, Str),
    ],
);

/// `POST /crm/v3/properties/companies/batch/create`: `BatchInputPropertyCreate`.
pub const PROPERTIES_CREATE: Shape = Object(
    "BatchInputPropertyCreate",
    &[(
        "inputs",
        true,
        List(&Object(
            "PropertyCreate",
            &[
                ("fieldType", true, Str),
                ("groupName", true, Str),
                ("label", true, Str),
                ("name", true, Str),
                ("type", true, Str),
                ("description", false, Str),
                ("displayOrder", false, Int),
                ("hidden", false, Bool),
                (
                    "options",
                    false,
                    List(&Object(
                        "OptionInput",
                        &[("hidden", true, Bool), ("label", true, Str), ("value", true, Str), ("displayOrder", false, Int), ("description", false, Str)],
                    )),
                ),
            ],
        )),
    )],
);

/// `POST /crm/v3/properties/companies/groups`: `PropertyGroupCreate`.
pub const GROUP_CREATE: Shape = Object("PropertyGroupCreate", &[("label", true, Str), ("name", true, Str), ("displayOrder", false, Int)]);

/// `PUT /crm/v3/lists/{listId}/memberships/add`: an array of record ids.
pub const MEMBERSHIPS_ADD: Shape = STRINGS;

/// The shape a request's body must have, by method and path.
pub fn shape_of(method: &str, path: &str) -> Option<&'static Shape> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    Some(match (method, segments.as_slice()) {
        ("POST", ["crm", "v3", "objects", "companies", "batch", "create"]) => &BATCH_CREATE,
        ("POST", ["crm", "v3", "objects", "companies", "batch", "update"]) => &BATCH_UPDATE,
        ("POST", ["crm", "v3", "objects", "companies", "batch", "read"]) => &BATCH_READ,
        ("POST", ["crm", "v3", "objects", "companies", "search"]) => &SEARCH,
        ("POST", ["crm", "v3", "properties", "companies", "batch", "create"]) => &PROPERTIES_CREATE,
        ("POST", ["crm", "v3", "properties", "companies", "groups"]) => &GROUP_CREATE,
        ("PUT", ["crm", "v3", "lists", _, "memberships", "add"]) => &MEMBERSHIPS_ADD,
        _ => return None,
    })
}

/// What is wrong with a body, worded as HubSpot words it, or `None` when it fits.
pub fn check(shape: &Shape, value: &Value) -> Option<String> {
    let mut problems = Vec::new();
    walk(shape, value, "", &mut problems);
    (!problems.is_empty()).then(|| problems.join("; "))
}

fn walk(shape: &Shape, value: &Value, at: &str, out: &mut Vec<String>) {
    let wrong = |out: &mut Vec<String>, kind: &str| {
        out.push(format!("Cannot deserialize value of type `{kind}` from {} at `{}`", describe(value), if at.is_empty() { "$" } else { at }))
    };
    match shape {
        Str if !value.is_string() => wrong(out, "java.lang.String"),
        Int if !(value.is_i64() || value.is_u64()) => wrong(out, "int"),
        Bool if !value.is_boolean() => wrong(out, "boolean"),
        Str | Int | Bool => {}
        List(item) => match value.as_array() {
            Some(items) => items.iter().enumerate().for_each(|(i, v)| walk(item, v, &format!("{at}[{i}]"), out)),
            None => wrong(out, "java.util.ArrayList"),
        },
        Map(item) => match value.as_object() {
            Some(map) => map.iter().for_each(|(k, v)| walk(item, v, &format!("{at}.{k}"), out)),
            None => wrong(out, "java.util.LinkedHashMap"),
        },
        Object(name, fields) => {
            let Some(map) = value.as_object() else {
                return wrong(out, name);
            };
            let missing: Vec<&str> = fields.iter().filter(|(k, required, _)| *required && !map.contains_key(*k)).map(|(k, ..)| *k).collect();
            if !missing.is_empty() {
                out.push(format!("Cannot build {name}, some of required attributes are not set [{}]", missing.join(", ")));
            }
            for (key, _, field) in fields.iter() {
                if let Some(v) = map.get(*key) {
                    walk(field, v, &format!("{at}.{key}"), out);
                }
            }
        }
    }
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
