//! Golden bytes: the exact encoding of every frame kind, every handshake
//! message and every error that travels. A change that fails here changes
//! the protocol: bump [`VERSION`](super::VERSION) on purpose and update
//! `docs/wire.md`.

use super::*;
use crate::error::RemoteError;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The whole frame (length prefix included) of `header` and `payload`.
fn frame(header: &Header<'_>, payload: &impl Serialize) -> String {
    let mut buf = Vec::new();
    encode_frame(&mut buf, header, payload).unwrap();
    // What is pinned also decodes back to itself.
    let (back, rest) = decode_header(&buf[LEN_PREFIX..]).unwrap();
    assert_eq!(&back, header);
    let _ = rest;
    hex(&buf)
}

fn encoded(value: &impl Serialize) -> String {
    hex(&postcard::to_stdvec(value).unwrap())
}

#[test]
fn the_version_and_preamble() {
    assert_eq!(VERSION, 5);
    assert_eq!(hex(&MAGIC), "5250437f");
}

#[test]
fn every_frame_kind() {
    // Length (u32, little-endian), kind (varint), fields, payload.
    let call = Header::Call {
        id: 1,
        target: "Calc.add",
        timeout_ms: 300,
    };
    assert_eq!(
        frame(&call, &(2i64, 3i64)),
        "0f000000_00_01_0843616c632e616464_ac02_04_06".replace('_', "")
    );
    let notify = Header::Notify {
        target: "Log.write",
    };
    assert_eq!(
        frame(&notify, &("hi",)),
        "0e000000_01_094c6f672e7772697465_026869".replace('_', "")
    );
    assert_eq!(
        frame(&Header::Reply { id: 130 }, &5i64),
        "04000000_02_8201_0a".replace('_', "")
    );
    assert_eq!(
        frame(&Header::Error { id: 2 }, &()),
        "0200000003_02".replace('_', "")
    );
    assert_eq!(
        frame(&Header::Cancel { id: 3 }, &()),
        "0200000004_03".replace('_', "")
    );
    assert_eq!(frame(&Header::Ping { id: 0 }, &()), "020000000500");
    assert_eq!(frame(&Header::Pong { id: 4 }, &()), "020000000604");
    assert_eq!(frame(&Header::Goodbye, &()), "0100000007");
    assert_eq!(frame(&Header::Shutdown, &()), "0100000008");
    let item = Header::Item {
        id: 3,
        way: Way::Down,
    };
    assert_eq!(frame(&item, &7u8), "04000000_09_03_00_07".replace('_', ""));
    let end = Header::End {
        id: 3,
        way: Way::Up,
    };
    assert_eq!(
        frame(&end, &None::<RemoteError>),
        "04000000_0a_03_01_00".replace('_', "")
    );
    let credit = Header::Credit {
        id: 3,
        way: Way::Up,
        bytes: 65536,
    };
    assert_eq!(
        frame(&credit, &()),
        "06000000_0b_03_01_808004".replace('_', "")
    );
    assert_eq!(
        frame(&Header::Stop { id: 3 }, &()),
        "02000000_0c_03".replace('_', "")
    );
    let names = vec!["rpc.ref.00112233445566778899aabbccddeeff"];
    let name_hex =
        "28_7270632e7265662e3030313132323333343435353636373738383939616162626363646465656666";
    assert_eq!(
        frame(&Header::Handles, &names),
        format!("2b000000_0d_01_{name_hex}").replace('_', "")
    );
    assert_eq!(
        frame(&Header::Release, &names),
        format!("2b000000_0e_01_{name_hex}").replace('_', "")
    );
}

#[test]
fn every_error_that_travels() {
    let cases = [
        (RemoteError::UnknownObject("Calc".into()), "00_0443616c63"),
        (
            RemoteError::UnknownMethod {
                object: "Calc".into(),
                method: "mul".into(),
            },
            "01_0443616c63_036d756c",
        ),
        (RemoteError::BadArguments("x".into()), "02_0178"),
        (RemoteError::Panicked("boom".into()), "03_04626f6f6d"),
        (RemoteError::Busy { limit: 300 }, "04_ac02"),
        (RemoteError::ShuttingDown, "05"),
        (RemoteError::DeadlineExceeded, "06"),
        (
            RemoteError::ReplyTooLarge {
                size: 2000,
                limit: 1024,
            },
            "07_d00f_8008",
        ),
        (RemoteError::Failed("no".into()), "08_026e6f"),
        (RemoteError::TooManyStreams { limit: 2 }, "09_02"),
        (
            RemoteError::DeadHandle("rpc.ref.1".into()),
            "0a_097270632e7265662e31",
        ),
    ];
    for (error, want) in cases {
        assert_eq!(encoded(&error), want.replace('_', ""), "{error:?}");
        let back: RemoteError =
            postcard::from_bytes(&postcard::to_stdvec(&error).unwrap()).unwrap();
        assert_eq!(back, error);
    }
}

#[test]
fn every_handshake_message() {
    let hello = Handshake::Hello(Hello {
        max_frame: 1 << 20,
        max_in_flight: 64,
        pake: Some(vec![0x41; PAKE_MESSAGE_LEN]),
        name: Some("w".into()),
    });
    let pake = "41".repeat(PAKE_MESSAGE_LEN);
    assert_eq!(
        encoded(&hello),
        format!("00_808040_40_01_21{pake}_01_0177").replace('_', "")
    );
    let plain = Handshake::Hello(Hello {
        max_frame: 1,
        max_in_flight: 2,
        pake: None,
        name: None,
    });
    assert_eq!(encoded(&plain), "00_01_02_00_00".replace('_', ""));
    let confirm = Handshake::Confirm([9; CONFIRM_LEN]);
    assert_eq!(encoded(&confirm), format!("01{}", "09".repeat(CONFIRM_LEN)));
    let tag = "0a".repeat(CONFIRM_LEN);
    let cases = [
        (
            Verdict::Accepted {
                connection_id: 5,
                confirm: None,
            },
            "02_00_05_00".to_string(),
        ),
        (
            Verdict::Accepted {
                connection_id: 5,
                confirm: Some([10; CONFIRM_LEN]),
            },
            format!("02_00_05_01_{tag}"),
        ),
        (
            Verdict::Rejected(Rejection::AuthFailed("a".into())),
            "02_01_00_0161".into(),
        ),
        (
            Verdict::Rejected(Rejection::Refused("r".into())),
            "02_01_01_0172".into(),
        ),
        (
            Verdict::Rejected(Rejection::Protocol("p".into())),
            "02_01_02_0170".into(),
        ),
    ];
    for (verdict, want) in cases {
        assert_eq!(encoded(&Handshake::Verdict(verdict)), want.replace('_', ""));
    }
}

#[test]
fn an_unknown_frame_kind_is_named_in_the_error() {
    let err = decode_header(&[200, 1, 0]).unwrap_err();
    assert_eq!(
        err,
        "frame of 3 bytes could not be decoded: unknown frame kind 200"
    );
    let err = decode_header(&[0, 1]).unwrap_err();
    assert!(
        err.starts_with("frame of 2 bytes could not be decoded: "),
        "{err}"
    );
}

#[test]
fn the_introspection_answer() {
    use crate::dispatch::RemoteObject;
    let listing = vec![RemoteObject {
        name: "A".into(),
        methods: vec!["b".into(), "c".into()],
    }];
    assert_eq!(encoded(&listing), "01_0141_02_0162_0163".replace('_', ""));
}

#[test]
fn the_change_notifications() {
    use crate::dispatch::RemoteChange;
    assert_eq!(
        encoded(&(RemoteChange::Exposed("B".into()),)),
        "00_0142".replace('_', "")
    );
    assert_eq!(
        encoded(&(RemoteChange::Removed("B".into()),)),
        "01_0142".replace('_', "")
    );
}
