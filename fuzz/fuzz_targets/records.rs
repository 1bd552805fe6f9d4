//! Lifecycle events as the inbox reads them (untrusted files from other
//! systems), audit records as `audit verify` reads a local line or a
//! record's body, and the holdings and retention rules a fleet server
//! ships to its lifecycle host. The first byte picks the decoder.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 5 {
        0 => {
            let _ = gallra::lifecycle::Event::parse(body);
        }
        1 => {
            let _ = serde_json::from_slice::<gallra::lifecycle::StoredEvent>(body);
        }
        2 => {
            use gallra::format::holdings::{HoldingsBody, from_body};
            if let Ok(h) = serde_json::from_slice::<HoldingsBody>(body) {
                let _ = from_body(h, "tenants/acme/holdings", "acme");
            }
        }
        3 => {
            use gallra::format::rules::{RulesBody, from_body};
            use gallra::lifecycle::rules::Retention;
            if let Ok(body) = serde_json::from_slice::<RulesBody>(body)
                && let Ok(body) = from_body(body, "lifecycle/rules")
                && let Ok(theirs) = Retention::policy_of_body(&body)
            {
                let builtin = RulesBody {
                    time_zone: "UTC".into(),
                    default: Default::default(),
                    category: Default::default(),
                    tenant: Default::default(),
                    ..body.clone()
                };
                let here = Retention::policy_of_body(&builtin).expect("the built-in rules parse");
                let pairs = body.tenant.keys().map(|t| (t.as_str(), "site"));
                let _ = here.differences(&theirs, &body.host, pairs);
            }
        }
        _ => {
            if let Ok(r) = serde_json::from_slice::<gallra::audit::Record>(body) {
                let _ = r.compute_hash();
                let _ = r.object_path();
            }
        }
    }
});
