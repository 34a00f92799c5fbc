//! Arbitrary protobuf request bodies: `decode` gives a typed error or an object, and an
//! object that decodes re-encodes and decodes again to the same kind.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podvisor_apiserver::protobuf;

fuzz_target!(|data: &[u8]| {
    // Bodies with and without the magic prefix, so the fuzzer reaches the kind messages.
    let mut framed = protobuf::MAGIC.to_vec();
    framed.extend_from_slice(data);
    for body in [data, &framed[..]] {
        if let Ok(value) = protobuf::decode(body) {
            let again = protobuf::encode(&value).expect("a decoded object re-encodes");
            let back = protobuf::decode(&again).expect("a re-encoded object decodes");
            assert_eq!(back["kind"], value["kind"]);
        }
    }
    let _ = protobuf::decode_watch_event(data);
});
