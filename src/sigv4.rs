//! AWS Signature Version 4 for the two AWS APIs gallra calls beside
//! object_store: the key service's KMS JSON protocol and the S3 calls
//! object_store does not make. One place signs both, with `aws-sigv4`:
//! what differs between them is the service name and S3's signing rules.

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use std::time::SystemTime;

/// The AWS service a request is signed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Kms,
    /// S3 signs the path as sent, unnormalised, and the body's SHA-256 as a
    /// header of its own (`x-amz-content-sha256`).
    S3,
}

/// The headers that sign a request of `method` to `url` with `headers` and
/// `body`, made now: to send with the request's own headers. An error says
/// why in a line (never a credential).
pub fn signing_headers(
    service: Service,
    region: &str,
    credentials: Credentials,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Vec<(String, String)>, String> {
    let mut settings = SigningSettings::default();
    let name = match service {
        Service::Kms => "kms",
        Service::S3 => {
            settings.percent_encoding_mode = PercentEncodingMode::Single;
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
            settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
            "s3"
        }
    };
    let identity = credentials.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(name)
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .map_err(|e| format!("signing: {e}"))?
        .into();
    let signable = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| format!("signing: {e}"))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| format!("signing: {e}"))?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(service: Service) -> Vec<String> {
        let creds = Credentials::new("AKIDEXAMPLE", "s3cr3t", None, None, "test");
        let mut names: Vec<String> = signing_headers(
            service,
            "eu-north-1",
            creds,
            "PUT",
            "https://s3.eu-north-1.amazonaws.com/b/k",
            &[("x-amz-object-lock-mode", "COMPLIANCE")],
            b"body",
        )
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
        names.sort();
        names
    }

    #[test]
    fn s3_signs_the_body_hash_as_a_header_and_kms_does_not() {
        assert!(names(Service::S3).contains(&"x-amz-content-sha256".to_string()));
        assert!(!names(Service::Kms).contains(&"x-amz-content-sha256".to_string()));
        for service in [Service::S3, Service::Kms] {
            let n = names(service);
            assert!(
                n.contains(&"authorization".to_string()) && n.contains(&"x-amz-date".to_string()),
                "{n:?}"
            );
        }
    }
}
