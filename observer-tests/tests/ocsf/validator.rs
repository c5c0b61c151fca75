//! Checks an OCSF event against the OCSF 1.3.0 schema committed beside this
//! file (schema-1.3.0.json, see README.md): its class by `class_uid`
//! (Base Event for 0); every required attribute present (those of a
//! profile only when the event declares the profile in
//! `metadata.profiles`); no attribute the class, its declared profiles and
//! declared extensions do not define; each value of its type (base type,
//! range, max length, regex), arrays where the schema says so, objects
//! checked recursively against their object definitions; enum ids among
//! the schema's values and their caption siblings matching; and
//! class_uid/category_uid/type_uid consistent.
use regex::Regex;
use serde_json::{Map, Value};

/// The attributes of the extensions an event may declare in
/// `metadata.extensions`, by extension name: observer's single top-level
/// attribute (`src/export/ocsf.rs`).
fn extension_attributes(name: &str) -> Option<Value> {
    match name {
        "observer" => Some(serde_json::json!({
            "capture_topology": {"type": "string_t", "requirement": "required"}
        })),
        _ => None,
    }
}

pub struct Schema {
    s: Value,
}

struct Ctx<'a> {
    profiles: Vec<String>,
    errors: &'a mut Vec<String>,
}

impl Schema {
    pub fn load() -> Schema {
        let text = include_str!("schema-1.3.0.json");
        let s: Value = serde_json::from_str(text).expect("schema-1.3.0.json");
        assert_eq!(s["version"], "1.3.0");
        Schema { s }
    }

    /// The class definitions the committed schema holds, by uid.
    pub fn class_uids(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.s["classes"]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.parse().unwrap())
            .collect();
        v.sort_unstable();
        v
    }

    /// Every violation of `ev` against its class; empty when it is valid.
    pub fn validate(&self, ev: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        let Some(obj) = ev.as_object() else {
            return vec!["the event is not a JSON object".into()];
        };
        let Some(class_uid) = obj.get("class_uid").and_then(Value::as_u64) else {
            return vec!["class_uid: missing or not an integer".into()];
        };
        let class = if class_uid == 0 {
            &self.s["base_event"]
        } else {
            &self.s["classes"][class_uid.to_string()]
        };
        if class.is_null() {
            return vec![format!(
                "class_uid {class_uid}: not a class of the committed schema"
            )];
        }
        // type_uid = class_uid * 100 + activity_id; category by class.
        let activity = obj.get("activity_id").and_then(Value::as_u64);
        if let Some(a) = activity {
            if obj.get("type_uid").and_then(Value::as_u64) != Some(class_uid * 100 + a) {
                errors.push(format!(
                    "type_uid: {:?}, expected class_uid * 100 + activity_id = {}",
                    obj.get("type_uid"),
                    class_uid * 100 + a
                ));
            }
        }
        let category = class["category_uid"].as_u64().unwrap_or(0);
        if obj.get("category_uid").and_then(Value::as_u64) != Some(category) {
            errors.push(format!(
                "category_uid: {:?}, class {class_uid} is in category {category}",
                obj.get("category_uid")
            ));
        }
        let profiles: Vec<String> = ev
            .pointer("/metadata/profiles")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str().map(str::to_string))
            .collect();
        let allowed: Vec<&str> = class["profiles"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        for p in &profiles {
            if !allowed.contains(&p.as_str()) {
                errors.push(format!(
                    "metadata.profiles: {p:?} is not a profile of class {class_uid}"
                ));
            }
        }
        let mut attrs = class["attributes"].as_object().cloned().unwrap_or_default();
        for ext in ev
            .pointer("/metadata/extensions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = ext["name"].as_str().unwrap_or("");
            match extension_attributes(name) {
                Some(Value::Object(more)) => attrs.extend(more),
                _ => errors.push(format!("metadata.extensions: unknown extension {name:?}")),
            }
        }
        let mut cx = Ctx {
            profiles,
            errors: &mut errors,
        };
        self.object(&mut cx, "", obj, &attrs);
        errors
    }

    fn object(
        &self,
        cx: &mut Ctx<'_>,
        path: &str,
        value: &Map<String, Value>,
        attrs: &Map<String, Value>,
    ) {
        let applies = |def: &Value, profiles: &[String]| {
            def["profile"]
                .as_str()
                .is_none_or(|p| profiles.iter().any(|d| d == p))
        };
        for (name, def) in attrs {
            if def["requirement"] == "required"
                && applies(def, &cx.profiles)
                && value.get(name).is_none_or(Value::is_null)
            {
                cx.errors
                    .push(format!("{path}{name}: required attribute missing"));
            }
        }
        for (name, v) in value {
            let here = format!("{path}{name}");
            let Some(def) = attrs.get(name) else {
                cx.errors
                    .push(format!("{here}: not an attribute of this class or object"));
                continue;
            };
            if !applies(def, &cx.profiles) {
                cx.errors.push(format!(
                    "{here}: attribute of profile {} which the event does not declare",
                    def["profile"]
                ));
            }
            if def["is_array"] == true {
                match v.as_array() {
                    Some(items) => {
                        for (i, item) in items.iter().enumerate() {
                            self.value(cx, &format!("{here}[{i}]"), item, def);
                        }
                    }
                    None => cx.errors.push(format!("{here}: expected an array")),
                }
            } else {
                self.value(cx, &here, v, def);
            }
            // An enum id's caption sibling says the same (Other, 99, is free).
            if let (Some(sib), Some(id)) = (def["sibling"].as_str(), v.as_i64()) {
                if let (Some(caption), Some(given)) = (
                    def["enum"][id.to_string()]["caption"].as_str(),
                    value.get(sib).and_then(Value::as_str),
                ) {
                    if id != 99 && caption != given {
                        cx.errors.push(format!(
                            "{path}{sib}: {given:?}, but {name} {id} is {caption:?}"
                        ));
                    }
                }
            }
        }
    }

    fn value(&self, cx: &mut Ctx<'_>, path: &str, v: &Value, def: &Value) {
        let ty = def["type"].as_str().unwrap_or("");
        if v.is_null() {
            cx.errors.push(format!("{path}: null"));
            return;
        }
        if ty == "object_t" {
            let object_type = def["object_type"].as_str().unwrap_or("");
            let Some(o) = v.as_object() else {
                cx.errors
                    .push(format!("{path}: expected an object ({object_type})"));
                return;
            };
            // `object` is OCSF's open object (unmapped, xattributes).
            if object_type == "object" {
                return;
            }
            match self.s["objects"][object_type]["attributes"].as_object() {
                Some(attrs) => self.object(cx, &format!("{path}."), o, attrs),
                None => cx.errors.push(format!(
                    "{path}: object {object_type:?} is not in the committed schema"
                )),
            }
            return;
        }
        let t = &self.s["types"][ty];
        if t.is_null() {
            cx.errors.push(format!("{path}: unknown type {ty:?}"));
            return;
        }
        let base = t["type"].as_str().unwrap_or(ty);
        let ok = match base {
            "string_t" => v.is_string(),
            "integer_t" => v.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
            "long_t" => v.is_i64() || v.is_u64(),
            "float_t" => v.is_number(),
            "boolean_t" => v.is_boolean(),
            "json_t" => true,
            other => {
                cx.errors
                    .push(format!("{path}: unsupported base type {other:?}"));
                return;
            }
        };
        if !ok {
            cx.errors
                .push(format!("{path}: {v} is not of type {ty} ({base})"));
            return;
        }
        if let Some(s) = v.as_str() {
            for limit in [&t["max_len"], &self.s["types"][base]["max_len"]] {
                if let Some(max) = limit.as_u64() {
                    if s.len() as u64 > max {
                        cx.errors
                            .push(format!("{path}: longer than {max} ({})", s.len()));
                    }
                }
            }
            if let Some(re) = t["regex"].as_str() {
                let re = Regex::new(re).expect("schema regex");
                if !re.is_match(s) {
                    cx.errors
                        .push(format!("{path}: {s:?} does not match the {ty} pattern"));
                }
            }
        }
        if let (Some([lo, hi]), Some(n)) = (t["range"].as_array().map(Vec::as_slice), v.as_i64()) {
            if lo.as_i64().is_some_and(|lo| n < lo) || hi.as_i64().is_some_and(|hi| n > hi) {
                cx.errors
                    .push(format!("{path}: {n} outside the range of {ty}"));
            }
        }
        if let Some(values) = def["enum"].as_object() {
            let key = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if !values.contains_key(&key) {
                cx.errors.push(format!(
                    "{path}: {key} is not one of the enum values {:?}",
                    values.keys().collect::<Vec<_>>()
                ));
            }
        }
    }
}
