//! DJUST_CONFIG values of any shape: parsing never panics, and what it
//! accepts is valid (the default tenant is a valid id, the prefix is usable).
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use tenantry::config::{parse, Value, KNOWN_KEYS};
use tenantry::tenant_id::is_valid;

fn value(bytes: &[u8], depth: u8) -> Value {
    let Some((&tag, rest)) = bytes.split_first() else { return Value::None };
    let text = String::from_utf8_lossy(rest).into_owned();
    match tag % 8 {
        0 => Value::None,
        1 => Value::Bool(tag & 0x80 != 0),
        2 => Value::Int(i128::from(i64::from_le_bytes(
            rest.iter().copied().chain([0; 8]).take(8).collect::<Vec<_>>().try_into().unwrap_or([0; 8]),
        ))),
        3 => Value::Float(f64::from(rest.len() as u32) - 3.5),
        4 if depth < 3 => Value::List(rest.split(|b| *b == b',').map(|p| value(p, depth + 1)).collect()),
        5 => Value::Object { type_name: "function".into(), callable: tag & 0x80 != 0, handle: 0 },
        6 if depth < 3 => Value::Map(
            rest.split(|b| *b == b',')
                .map(|p| {
                    let (k, v) = p.split_at(p.iter().position(|b| *b == b'=').unwrap_or(p.len()));
                    (String::from_utf8_lossy(k).into_owned(), value(v.get(1..).unwrap_or(&[]), depth + 1))
                })
                .collect(),
        ),
        _ => Value::Str(text),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut map = BTreeMap::new();
    for chunk in data.split(|b| *b == 0xff) {
        let Some((&k, rest)) = chunk.split_first() else { continue };
        let key = KNOWN_KEYS[usize::from(k) % KNOWN_KEYS.len()];
        map.insert(key.to_owned(), value(rest, 0));
    }
    match parse(&map) {
        Ok(settings) => {
            if let Some(id) = &settings.default_tenant {
                assert!(is_valid(id.as_str()));
            }
            assert!(settings.path.position >= 1);
            assert!(settings.presence_timeout > 0.0);
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            for e in errors {
                assert!(KNOWN_KEYS.contains(&e.key.as_str()));
                let _ = e.to_string();
            }
        }
    }
});
