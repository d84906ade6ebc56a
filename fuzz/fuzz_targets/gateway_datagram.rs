//! Any datagram: decoded or refused, never a panic; what decodes encodes
//! back to the same 28 bytes.
#![no_main]

use gateway::wire::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = Message::decode(data) {
        assert_eq!(message.encode().as_slice(), data);
        let _ = message.address_field();
    }
});
