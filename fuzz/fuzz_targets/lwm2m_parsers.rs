//! Every parser the LwM2M gateway runs on bytes from the network: CoAP datagrams, the registration
//! request inside them, link format, and each content format at a few base paths. None may panic,
//! hang or allocate without bound, whatever the input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_lwm2m::content::{self, ContentFormat, Path};
use ward_lwm2m::objects::StandardObjects;
use ward_lwm2m::{coap, link, registration};

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = coap::parse(data) {
        let _ = registration::RegistrationRequest::from_packet(&packet);
    }
    let _ = link::parse_bytes(data);
    for format in [
        ContentFormat::Tlv,
        ContentFormat::SenmlJson,
        ContentFormat::SenmlCbor,
        ContentFormat::Text,
        ContentFormat::Opaque,
    ] {
        for base in ["/3", "/3/0", "/3/0/9", "/5/0/1", "/8/0"] {
            if let Ok(base) = base.parse::<Path>() {
                let _ = content::decode(format, &base, data, &StandardObjects);
            }
        }
    }
});
