use super::*;
use crate::objects::StandardObjects;

type R = Result<(), ContentError>;

fn device_records() -> Vec<Record> {
    vec![
        Record::new(Path::resource(3, 0, 0), Value::String("Ward Medical".into())),
        Record::new(Path::resource(3, 0, 9), Value::Integer(87)),
        Record::new(Path::resource(3, 0, 10), Value::Integer(-300_000)),
        Record::new(Path::resource_instance(3, 0, 11, 0), Value::Integer(0)),
        Record::new(Path::resource_instance(3, 0, 11, 300), Value::Integer(5)),
        Record::new(Path::resource(3, 0, 13), Value::Time(1_700_000_000)),
        Record::new(Path::resource(3, 0, 21), Value::Integer(i64::MIN)),
    ]
}

fn mixed_records() -> Vec<Record> {
    vec![
        Record::new(Path::resource(9, 1, 0), Value::Float(-12.625)),
        Record::new(Path::resource(9, 1, 1), Value::Bool(true)),
        Record::new(
            Path::resource(9, 1, 2),
            Value::Opaque(vec![0, 255, 7, 8, 9, 10, 11, 12, 13]),
        ),
        Record::new(
            Path::resource(9, 1, 3),
            Value::ObjLink(ObjLink {
                object: 3,
                instance: 0,
            }),
        ),
        Record::new(Path::resource(9, 1, 4), Value::String("x".repeat(300))),
    ]
}

fn mixed_types(o: u16, r: u16) -> Option<ResourceType> {
    match (o, r) {
        (9, 0) => Some(ResourceType::Float),
        (9, 1) => Some(ResourceType::Boolean),
        (9, 2) => Some(ResourceType::Opaque),
        (9, 3) => Some(ResourceType::ObjLink),
        (9, 4) => Some(ResourceType::String),
        _ => None,
    }
}

#[test]
fn path_parse_and_display() -> Result<(), PathError> {
    for s in ["/3", "/3/0", "/3/0/1", "/3/0/11/2", "/65534/65534"] {
        assert_eq!(s.parse::<Path>()?.to_string(), s);
    }
    for bad in [
        "",
        "3/0",
        "/",
        "/3/",
        "/3//1",
        "/65535",
        "/1/2/3/4/5",
        "/a",
        "/+1",
        "/ 1",
        "/999999",
    ] {
        assert!(bad.parse::<Path>().is_err(), "{bad:?}");
    }
    let p: Path = "/3/0/11/2".parse()?;
    assert_eq!(p.depth(), 4);
    assert!(Path::instance(3, 0).contains(&p) && !p.contains(&Path::instance(3, 0)));
    assert_eq!(Path::from_segments(&["3", "0"])?, Path::instance(3, 0));
    Ok(())
}

#[test]
fn tlv_round_trips_at_every_depth() -> R {
    let records = device_records();
    for base in [Path::object(3), Path::instance(3, 0)] {
        let bytes = encode(ContentFormat::Tlv, &base, &records)?;
        assert_eq!(
            decode(ContentFormat::Tlv, &base, &bytes, &StandardObjects)?,
            records,
            "{base}"
        );
    }
    let one = vec![Record::new(Path::resource(3, 0, 9), Value::Integer(87))];
    let bytes = encode(ContentFormat::Tlv, &Path::resource(3, 0, 9), &one)?;
    assert_eq!(bytes, [0xC1, 9, 87]);
    assert_eq!(
        decode(
            ContentFormat::Tlv,
            &Path::resource(3, 0, 9),
            &bytes,
            &StandardObjects
        )?,
        one
    );
    let multi: Vec<Record> = records
        .iter()
        .filter(|r| r.path.resource_id() == Some(11))
        .cloned()
        .collect();
    let base = Path::resource(3, 0, 11);
    let bytes = encode(ContentFormat::Tlv, &base, &multi)?;
    assert_eq!(
        decode(ContentFormat::Tlv, &base, &bytes, &StandardObjects)?,
        multi
    );
    let ri = vec![multi[1].clone()];
    let base = Path::resource_instance(3, 0, 11, 300);
    let bytes = encode(ContentFormat::Tlv, &base, &ri)?;
    assert_eq!(bytes, [0x61, 0x01, 0x2C, 5], "16-bit id");
    assert_eq!(decode(ContentFormat::Tlv, &base, &bytes, &StandardObjects)?, ri);
    Ok(())
}

#[test]
fn tlv_round_trips_all_types_and_length_fields() -> R {
    let records = mixed_records();
    let base = Path::instance(9, 1);
    let bytes = encode(ContentFormat::Tlv, &base, &records)?;
    assert_eq!(decode(ContentFormat::Tlv, &base, &bytes, &mixed_types)?, records);
    // 16- and 24-bit length fields.
    for len in [300usize, 70_000] {
        let big = vec![Record::new(Path::resource(9, 1, 2), Value::Opaque(vec![1; len]))];
        let bytes = tlv::encode(&base, &big)?;
        assert_eq!(tlv::decode(&base, &bytes, &mixed_types)?, big);
    }
    Ok(())
}

#[test]
fn tlv_decodes_spec_example() -> R {
    // LwM2M spec example: /3/0 resources 0 (string "Open Mobile Alliance") and 9 (battery 100).
    let mut bytes = vec![0xC8, 0x00, 0x14];
    bytes.extend_from_slice(b"Open Mobile Alliance");
    bytes.extend_from_slice(&[0xC1, 0x09, 0x64]);
    let records = decode(
        ContentFormat::Tlv,
        &Path::instance(3, 0),
        &bytes,
        &StandardObjects,
    )?;
    assert_eq!(records[0].value, Value::String("Open Mobile Alliance".into()));
    assert_eq!(
        records[1],
        Record::new(Path::resource(3, 0, 9), Value::Integer(100))
    );
    // Object-instance wrapper on an instance path, and float in 4 bytes.
    let wrapped = [0x03, 0x00, 0xC1, 0x09, 0x64];
    assert_eq!(
        decode(
            ContentFormat::Tlv,
            &Path::instance(3, 0),
            &wrapped,
            &StandardObjects
        )?
        .len(),
        1
    );
    let f32_bytes = [0xC4, 0x00, 0x3F, 0xC0, 0x00, 0x00];
    let r = decode(
        ContentFormat::Tlv,
        &Path::instance(9, 1),
        &f32_bytes,
        &mixed_types,
    )?;
    assert_eq!(r[0].value, Value::Float(1.5));
    Ok(())
}

fn tlv_err(base: Path, bytes: &[u8]) -> Option<ContentError> {
    decode(ContentFormat::Tlv, &base, bytes, &StandardObjects).err()
}

#[test]
fn tlv_rejects_hostile_input() {
    let inst = Path::instance(3, 0);
    // Truncated header, id and length fields.
    assert_eq!(tlv_err(inst, &[0xC8]), Some(ContentError::Truncated(1)));
    assert_eq!(tlv_err(inst, &[0xE8, 0x00]), Some(ContentError::Truncated(1)));
    assert_eq!(tlv_err(inst, &[0xD8, 0x00]), Some(ContentError::Truncated(2)));
    // Length past the end (short and 24-bit "huge" forms).
    assert_eq!(
        tlv_err(inst, &[0xC3, 0x00, b'a']),
        Some(ContentError::LengthPastEnd {
            at: 0,
            len: 3,
            left: 1
        })
    );
    assert!(matches!(
        tlv_err(inst, &[0xD8, 0x00, 0xFF, 0xFF, 0xFF, 1]),
        Some(ContentError::LengthPastEnd { len: 0xFF_FFFF, .. })
    ));
    // Inner length past the outer entry's end.
    assert!(matches!(
        tlv_err(Path::object(3), &[0x02, 0x00, 0xC4, 0x09]),
        Some(ContentError::LengthPastEnd { .. })
    ));
    // Nesting that the structure forbids.
    let deep = [0x04, 0x00, 0x02, 0x01, 0x00, 0x00];
    assert!(matches!(
        tlv_err(Path::object(3), &deep),
        Some(ContentError::InvalidNesting { at: 2, .. })
    ));
    let ri_in_instance = [0x03, 0x00, 0x41, 0x00, 0x01];
    assert!(matches!(
        tlv_err(Path::object(3), &ri_in_instance),
        Some(ContentError::InvalidNesting { .. })
    ));
    assert!(matches!(
        tlv_err(Path::object(3), &[0xC1, 0x09, 1]),
        Some(ContentError::InvalidNesting { .. })
    ));
    assert!(matches!(
        tlv_err(inst, &[0x03, 0x01, 0xC1, 0x09, 1]),
        Some(ContentError::InvalidNesting { .. })
    ));
    // Wrong value sizes and bytes.
    assert!(matches!(
        tlv_err(inst, &[0xC3, 0x09, 1, 2, 3]),
        Some(ContentError::InvalidValue { .. })
    ));
    assert!(matches!(
        decode(
            ContentFormat::Tlv,
            &Path::instance(9, 1),
            &[0xC1, 0x01, 2],
            &mixed_types
        ),
        Err(ContentError::InvalidValue { .. })
    ));
    // Invalid UTF-8.
    assert_eq!(
        tlv_err(inst, &[0xC2, 0x00, 0xFF, 0xFE]),
        Some(ContentError::InvalidUtf8(Path::resource(3, 0, 0)))
    );
    // Too many records, too large.
    let many: Vec<u8> = (0..=MAX_RECORDS).flat_map(|_| [0xC1, 0x09, 1]).collect();
    assert_eq!(tlv_err(inst, &many), Some(ContentError::TooManyRecords));
    assert_eq!(
        tlv_err(inst, &vec![0; MAX_PAYLOAD + 1]),
        Some(ContentError::TooLarge(MAX_PAYLOAD + 1))
    );
}

#[test]
fn senml_json_round_trips_with_base_name() -> R {
    let records = device_records();
    let bytes = encode(ContentFormat::SenmlJson, &Path::object(3), &records)?;
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.starts_with(r#"[{"bn":"/3/0/","n":"0","vs":"Ward Medical"}"#),
        "{text}"
    );
    assert_eq!(
        decode(
            ContentFormat::SenmlJson,
            &Path::object(3),
            &bytes,
            &StandardObjects
        )?,
        records
    );
    let mixed = mixed_records();
    let bytes = encode(ContentFormat::SenmlJson, &Path::object(9), &mixed)?;
    assert_eq!(
        decode(ContentFormat::SenmlJson, &Path::object(9), &bytes, &mixed_types)?,
        mixed
    );
    Ok(())
}

#[test]
fn senml_json_resolves_names_and_times() -> R {
    let payload = br#"[{"bn":"/3/0/","bt":100,"n":"9","v":50,"t":5},{"n":"13","v":1.7e9},{"bn":"/5/0/","n":"1","vs":"coap://x"}]"#;
    let r = decode(
        ContentFormat::SenmlJson,
        &Path::object(3),
        payload,
        &StandardObjects,
    );
    assert!(
        matches!(r, Err(ContentError::OutsideTarget { .. })),
        "the /5 record is outside /3"
    );
    let payload = br#"[{"bn":"/3/0/","bt":100,"n":"9","v":50,"t":5},{"n":"13","v":1.7e9},{"n":"14","vs":"+01:00","xyz":[1,{"a":2}]}]"#;
    let r = decode(
        ContentFormat::SenmlJson,
        &Path::instance(3, 0),
        payload,
        &StandardObjects,
    )?;
    assert_eq!(
        r[0],
        Record {
            path: Path::resource(3, 0, 9),
            value: Value::Integer(50),
            time: Some(105.0)
        }
    );
    assert_eq!(r[1].value, Value::Time(1_700_000_000));
    assert_eq!(r[2].value, Value::String("+01:00".into()));
    Ok(())
}

fn json_err(payload: &str) -> Option<ContentError> {
    decode(
        ContentFormat::SenmlJson,
        &Path::object(3),
        payload.as_bytes(),
        &StandardObjects,
    )
    .err()
}

#[test]
fn senml_json_rejects_hostile_input() {
    assert!(
        matches!(json_err(r#"[{"n":"/3/0/9","v":1}"#), Some(ContentError::Json(_))),
        "truncated"
    );
    assert!(
        matches!(json_err(r#"{"n":"/3/0/9"}"#), Some(ContentError::Json(_))),
        "not an array"
    );
    assert_eq!(
        json_err(r#"[{"bn":"/3/0/","n":"x","v":1}]"#),
        Some(ContentError::UnresolvableName {
            index: 0,
            name: "/3/0/x".into()
        })
    );
    assert_eq!(
        json_err(r#"[{"n":"9","v":1}]"#),
        Some(ContentError::UnresolvableName {
            index: 0,
            name: "9".into()
        })
    );
    assert!(matches!(
        json_err(r#"[{"n":"/3/0","v":1}]"#),
        Some(ContentError::UnresolvableName { .. })
    ));
    assert_eq!(
        json_err(r#"[{"n":"/3/0/9"}]"#),
        Some(ContentError::MissingValue { index: 0 })
    );
    assert!(matches!(
        json_err(r#"[{"n":"/3/0/9","v":1,"vs":"a"}]"#),
        Some(ContentError::BadRecord { .. })
    ));
    assert!(matches!(
        json_err(r#"[{"n":"/3/0/9","v":"1"}]"#),
        Some(ContentError::BadRecord { .. })
    ));
    assert_eq!(
        json_err(r#"[{"n":"/3/0/9","vs":"high"}]"#),
        Some(ContentError::WrongType {
            path: Path::resource(3, 0, 9),
            expected: ResourceType::Integer
        })
    );
    assert!(matches!(
        json_err(r#"[{"n":"/3/0/9","v":1.5}]"#),
        Some(ContentError::InvalidValue { .. })
    ));
    assert!(matches!(
        json_err(r#"[{"n":"/3/0/9","v":1e300}]"#),
        Some(ContentError::InvalidValue { .. })
    ));
    assert!(matches!(
        json_err(r#"[{"n":"/3/0/9","v":1,"foo_":1}]"#),
        Some(ContentError::MustUnderstand { .. })
    ));
    let deep = format!(
        r#"[{{"n":"/3/0/9","v":1,"x":{}1{}}}]"#,
        "[".repeat(20),
        "]".repeat(20)
    );
    assert_eq!(json_err(&deep), Some(ContentError::TooDeep));
    let very_deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(json_err(&very_deep).is_some(), "no stack overflow");
    let many = format!("[{}]", vec![r#"{"n":"/3/0/9","v":1}"#; MAX_RECORDS + 1].join(","));
    assert_eq!(json_err(&many), Some(ContentError::TooManyRecords));
    assert!(
        decode(
            ContentFormat::SenmlJson,
            &Path::object(3),
            b"[\xff]",
            &StandardObjects
        )
        .is_err()
    );
}

#[test]
fn senml_cbor_round_trips() -> R {
    let records = device_records();
    let bytes = encode(ContentFormat::SenmlCbor, &Path::instance(3, 0), &records)?;
    assert_eq!(
        decode(
            ContentFormat::SenmlCbor,
            &Path::instance(3, 0),
            &bytes,
            &StandardObjects
        )?,
        records
    );
    let mut mixed = mixed_records();
    mixed[0].time = Some(12.5);
    let bytes = encode(ContentFormat::SenmlCbor, &Path::object(9), &mixed)?;
    assert_eq!(
        decode(ContentFormat::SenmlCbor, &Path::object(9), &bytes, &mixed_types)?,
        mixed
    );
    Ok(())
}

#[test]
fn senml_cbor_reads_hand_written_input() -> R {
    // [{-2: "/3/0/", 0: "9", 2: 42}, {0: "13", 2: f16 1.0}] with an indefinite outer array.
    let mut bytes = vec![0x9F, 0xA3, 0x21, 0x65];
    bytes.extend_from_slice(b"/3/0/");
    bytes.extend_from_slice(&[0x00, 0x61, b'9', 0x02, 0x18, 42]);
    bytes.extend_from_slice(&[0xA2, 0x00, 0x62, b'1', b'3', 0x02, 0xF9, 0x3C, 0x00, 0xFF]);
    let r = decode(
        ContentFormat::SenmlCbor,
        &Path::instance(3, 0),
        &bytes,
        &StandardObjects,
    )?;
    assert_eq!(r[0].value, Value::Integer(42));
    assert_eq!(r[1].value, Value::Time(1));
    Ok(())
}

fn cbor_err(bytes: &[u8]) -> Option<ContentError> {
    decode(
        ContentFormat::SenmlCbor,
        &Path::object(3),
        bytes,
        &StandardObjects,
    )
    .err()
}

#[test]
fn senml_cbor_rejects_hostile_input() {
    // A record: {0: "/3/0/9", 2: 1}
    let good = [
        0x81, 0xA2, 0x00, 0x66, b'/', b'3', b'/', b'0', b'/', b'9', 0x02, 0x01,
    ];
    assert!(cbor_err(&good).is_none());
    assert!(matches!(
        cbor_err(&good[..good.len() - 1]),
        Some(ContentError::Cbor { .. } | ContentError::BadRecord { .. })
    ));
    // Huge declared array / string lengths.
    assert_eq!(
        cbor_err(&[0x9B, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
        Some(ContentError::TooManyRecords)
    );
    assert!(
        cbor_err(&[
            0x81, 0xA1, 0x00, 0x7B, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF
        ])
        .is_some()
    );
    // Invalid UTF-8 in a name.
    assert!(matches!(
        cbor_err(&[0x81, 0xA2, 0x00, 0x61, 0xFF, 0x02, 0x01]),
        Some(ContentError::BadRecord { .. })
    ));
    // Wrong type: a string for an integer resource.
    let wrong = [
        0x81, 0xA2, 0x00, 0x66, b'/', b'3', b'/', b'0', b'/', b'9', 0x03, 0x61, b'x',
    ];
    assert!(matches!(cbor_err(&wrong), Some(ContentError::WrongType { .. })));
    // Unknown label nested too deep.
    let mut deep = vec![
        0x81, 0xA3, 0x00, 0x66, b'/', b'3', b'/', b'0', b'/', b'9', 0x02, 0x01, 0x18, 99,
    ];
    deep.extend(std::iter::repeat_n(0x81, 20));
    deep.push(0x01);
    assert_eq!(cbor_err(&deep), Some(ContentError::TooDeep));
    // Unresolvable name, not an array, trailing bytes.
    assert!(matches!(
        cbor_err(&[0x81, 0xA2, 0x00, 0x61, b'9', 0x02, 0x01]),
        Some(ContentError::UnresolvableName { .. })
    ));
    assert!(cbor_err(&[0xA0]).is_some());
    let mut trailing = good.to_vec();
    trailing.push(0x00);
    assert!(cbor_err(&trailing).is_some());
}

#[test]
fn text_and_opaque() -> R {
    let battery = Path::resource(3, 0, 9);
    let r = decode(ContentFormat::Text, &battery, b"42", &StandardObjects)?;
    assert_eq!(r, vec![Record::new(battery, Value::Integer(42))]);
    assert_eq!(encode(ContentFormat::Text, &battery, &r)?, b"42");
    for record in mixed_records() {
        let bytes = encode(ContentFormat::Text, &record.path, std::slice::from_ref(&record))?;
        assert_eq!(
            decode(ContentFormat::Text, &record.path, &bytes, &mixed_types)?,
            vec![record]
        );
    }
    assert!(matches!(
        decode(ContentFormat::Text, &battery, b"4x", &StandardObjects),
        Err(ContentError::InvalidValue { .. })
    ));
    assert!(matches!(
        decode(ContentFormat::Text, &battery, b"\xff", &StandardObjects),
        Err(ContentError::InvalidUtf8(_))
    ));
    assert!(matches!(
        decode(ContentFormat::Text, &Path::instance(3, 0), b"1", &StandardObjects),
        Err(ContentError::SingleResourceOnly(_))
    ));
    assert!(matches!(
        encode(ContentFormat::Text, &Path::object(3), &device_records()),
        Err(ContentError::SingleResourceOnly(_))
    ));
    let package = Path::resource(5, 0, 0);
    let r = decode(ContentFormat::Opaque, &package, &[1, 2, 3], &StandardObjects)?;
    assert_eq!(encode(ContentFormat::Opaque, &package, &r)?, [1, 2, 3]);
    assert!(matches!(
        decode(ContentFormat::Opaque, &battery, &[1], &StandardObjects),
        Err(ContentError::WrongType { .. })
    ));
    Ok(())
}

#[test]
fn encode_refuses_records_outside_the_target() {
    let r = encode(ContentFormat::Tlv, &Path::instance(3, 1), &device_records());
    assert!(matches!(r, Err(ContentError::OutsideTarget { .. })));
    assert_eq!(ContentFormat::from_code(11542), Some(ContentFormat::Tlv));
    assert_eq!(ContentFormat::from_code(11543), None);
}
