//! The S3 calls object_store does not make: a PUT that locks the version
//! it writes (S3 Object Lock's `x-amz-object-lock-*` headers), the lock an
//! object has, the bucket's versioning and Object Lock settings, and a
//! probe of whether this server's credentials may delete. SigV4-signed by
//! `aws-sigv4` over reqwest, as the key service's client is, on the store's
//! runtime and through the same limits, retries and counters as every
//! other call: a failure is made into an object_store error of the text
//! object_store itself writes, so that one reader (`describe`) and one
//! retry rule read both. Every other request stays on object_store.

use aws_credential_types::Credentials;
use base64::Engine;
use bytes::Bytes;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use serde::Deserialize;
use std::time::Instant;

use super::settings::{LockMode, ObjectLock};

/// The base64 MD5 of no bytes.
const EMPTY_BODY_MD5: &str = "1B2M2Y8AsgTpgAmY7PhCfg==";

/// One S3 bucket (and the target's prefix in it), as object_store's builder
/// was configured for the target.
pub(super) struct S3Api {
    /// `https://host[:port]/bucket` (path style) or `https://bucket.host`.
    base: String,
    bucket: String,
    /// The target's folder in the bucket, `""` or `web01/`.
    prefix: String,
    region: String,
    /// object_store's own: static keys, or the instance, container or
    /// web-identity credentials it finds, refreshed as it refreshes them.
    credentials: object_store::aws::AwsCredentialProvider,
    http: reqwest::Client,
    /// The target's server-side encryption, as object_store sends it on
    /// its PUTs, for the locked PUTs made here; `Err` for SSE-C, whose key
    /// this client does not send.
    encryption: Result<Vec<(&'static str, String)>, String>,
}

/// What an HTTP answer said.
pub(super) struct Answer {
    pub(super) headers: reqwest::header::HeaderMap,
    pub(super) body: Bytes,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

/// One version of an object, or a delete marker, as `ListObjectVersions`
/// says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ObjectVersion {
    /// Its name under the target's prefix.
    pub(super) key: String,
    pub(super) version: String,
    pub(super) modified: jiff::Timestamp,
    pub(super) size: u64,
    /// A delete marker: the object was deleted at `modified`.
    pub(super) deleted: bool,
    /// The current version (or marker) of its name, as the store says.
    pub(super) latest: bool,
    /// Its ETag (a delete marker has none): a copy of a version made in
    /// one PUT has the same.
    pub(super) etag: Option<String>,
}

/// Where the next page of a version listing starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct VersionsMarker {
    key: String,
    version: Option<String>,
}

/// A bucket's versioning, as `GetBucketVersioning` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BucketVersioning {
    Enabled,
    Suspended,
    /// Never turned on.
    Off,
}

/// A bucket's Object Lock, as `GetObjectLockConfiguration` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct BucketLock {
    /// The lock every new version gets when its PUT names none.
    pub default_mode: Option<LockMode>,
    pub default_days: Option<u32>,
}

impl S3Api {
    /// A client for the bucket `builder` was configured for (its URL and
    /// options already applied), under `prefix`.
    pub(super) fn new(
        builder: &AmazonS3Builder,
        credentials: object_store::aws::AwsCredentialProvider,
        bucket: &str,
        prefix: &str,
        timeout: std::time::Duration,
    ) -> Result<S3Api, String> {
        let get = |key: AmazonS3ConfigKey| builder.get_config_value(&key).filter(|v| !v.is_empty());
        let region = get(AmazonS3ConfigKey::Region).unwrap_or_else(|| "us-east-1".into());
        let virtual_hosted =
            get(AmazonS3ConfigKey::VirtualHostedStyleRequest).is_some_and(|v| v == "true");
        let endpoint = get(AmazonS3ConfigKey::Endpoint);
        let base = match (endpoint, virtual_hosted) {
            (Some(e), false) => format!("{}/{bucket}", e.trim_end_matches('/')),
            // object_store's rule: with virtual hosting on, the endpoint
            // already names the bucket.
            (Some(e), true) => e.trim_end_matches('/').to_string(),
            (None, false) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
            (None, true) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
        };
        let allow_http = get(AmazonS3ConfigKey::Client(
            object_store::ClientConfigKey::AllowHttp,
        ))
        .is_some_and(|v| v == "true");
        if base.starts_with("http://") && !allow_http {
            return Err("the endpoint is http:// and allow_http is not set".into());
        }
        // (object_store does not export the encryption keys' type: they are
        // named as its options are.)
        let sse = |name: &str| {
            <AmazonS3ConfigKey as std::str::FromStr>::from_str(name)
                .ok()
                .and_then(get)
        };
        let encryption = match sse("aws_server_side_encryption").as_deref() {
            None => Ok(Vec::new()),
            Some("sse-c") => {
                Err("a locked write with SSE-C (a customer key) is not supported".into())
            }
            Some(kind) => {
                let mut h = vec![("x-amz-server-side-encryption", kind.to_string())];
                if let Some(key) = sse("aws_sse_kms_key_id") {
                    h.push(("x-amz-server-side-encryption-aws-kms-key-id", key));
                }
                if let Some(on) = sse("aws_sse_bucket_key_enabled") {
                    h.push(("x-amz-server-side-encryption-bucket-key-enabled", on));
                }
                Ok(h)
            }
        };
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| e.to_string())?;
        let prefix = match prefix.trim_matches('/') {
            "" => String::new(),
            p => format!("{p}/"),
        };
        Ok(S3Api {
            base,
            bucket: bucket.to_string(),
            prefix,
            region,
            credentials,
            http,
            encryption,
        })
    }

    /// The URL of `key` (a path under the target's prefix, or `""` for the
    /// bucket itself) with `query`.
    fn url(&self, key: &str, query: &str) -> String {
        let mut url = self.base.clone();
        if !key.is_empty() {
            url.push('/');
            url.push_str(&uri_encode(&format!("{}{key}", self.prefix), false));
        }
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        url
    }

    /// One signed request; a non-2xx answer is an object_store error.
    async fn send(
        &self,
        method: reqwest::Method,
        key: &str,
        query: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> object_store::Result<Answer> {
        let url = self.url(key, query);
        let started = Instant::now();
        let generic = |text: String| object_store::Error::Generic {
            store: "S3",
            source: text.into(),
        };
        let credential =
            object_store::CredentialProvider::get_credential(&*self.credentials).await?;
        let credentials = Credentials::new(
            credential.key_id.clone(),
            credential.secret_key.clone(),
            credential.token.clone(),
            None,
            "gallra target",
        );
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let signing = crate::sigv4::signing_headers(
            crate::sigv4::Service::S3,
            &self.region,
            credentials,
            method.as_str(),
            &url,
            &headers,
            &body,
        )
        .map_err(|e| generic(format!("{method} {url}: {e}")))?;
        let mut request = self.http.request(method.clone(), &url).body(body);
        for (name, value) in headers.iter().copied() {
            request = request.header(name, value);
        }
        for (name, value) in &signing {
            request = request.header(name, value);
        }
        let performing = |rest: String| {
            let ms = started.elapsed().as_millis();
            format!("Error performing {method} {url} in {ms}ms - {rest}")
        };
        let transport = |e: reqwest::Error| object_store::Error::Generic {
            store: "S3",
            // The retry rule reads a transport failure by its io kind.
            source: Box::new(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                performing(format!("HTTP error: error sending request: {e}")),
            )),
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(transport)?;
        if status.is_success() {
            return Ok(Answer { headers, body });
        }
        // Only the error's code and message: S3 echoes the access key id
        // and what was signed in some bodies.
        let body = String::from_utf8_lossy(&body[..body.len().min(8192)]);
        let element = |name: &str| {
            super::requests::between(&body, &format!("<{name}>"), &format!("</{name}>"))
                .map(|v| format!("<{name}>{v}</{name}>"))
        };
        let text = performing(format!(
            "Server returned non-2xx status code: {status}: {}{}",
            element("Code").unwrap_or_default(),
            element("Message").unwrap_or_default()
        ));
        let path = format!("{}{key}", self.prefix);
        Err(match status.as_u16() {
            404 => object_store::Error::NotFound {
                path,
                source: text.into(),
            },
            412 => object_store::Error::AlreadyExists {
                path,
                source: text.into(),
            },
            _ => generic(text),
        })
    }

    /// Writes `key`, its version locked until `until`; with `create_only`,
    /// only if no object is there (`AlreadyExists` if one is). S3 requires
    /// a checksum of the body on a locked PUT.
    pub(super) async fn put_locked(
        &self,
        key: &str,
        data: Bytes,
        lock: &ObjectLock,
        until: jiff::Timestamp,
        create_only: bool,
    ) -> object_store::Result<object_store::PutResult> {
        use sha2::Digest;
        let checksum =
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&data));
        let mut headers = vec![
            ("x-amz-object-lock-mode", lock.mode.as_s3().to_string()),
            ("x-amz-object-lock-retain-until-date", s3_time(until)),
            ("x-amz-sdk-checksum-algorithm", "SHA256".to_string()),
            ("x-amz-checksum-sha256", checksum),
        ];
        if create_only {
            headers.push(("if-none-match", "*".to_string()));
        }
        headers.extend(self.encryption_headers()?);
        let answer = self
            .send(reqwest::Method::PUT, key, "", &headers, data)
            .await?;
        Ok(object_store::PutResult {
            e_tag: answer.header("etag"),
            version: answer.header("x-amz-version-id"),
            extensions: Default::default(),
        })
    }

    /// The target's server-side encryption headers for a write made here.
    fn encryption_headers(&self) -> object_store::Result<Vec<(&'static str, String)>> {
        self.encryption
            .clone()
            .map_err(|why| object_store::Error::NotSupported { source: why.into() })
    }

    /// Makes version `version` of `key` its current version again: a
    /// server-side copy (CopyObject), locked in `lock`'s mode until
    /// `until` when given, else as the bucket's default lock says.
    pub(super) async fn copy_version(
        &self,
        key: &str,
        version: &str,
        lock: Option<(LockMode, jiff::Timestamp)>,
    ) -> object_store::Result<()> {
        let source = format!(
            "/{}/{}?versionId={}",
            self.bucket,
            uri_encode(&format!("{}{key}", self.prefix), false),
            uri_encode(version, true)
        );
        let mut headers = vec![("x-amz-copy-source", source)];
        if let Some((mode, until)) = lock {
            headers.push(("x-amz-object-lock-mode", mode.as_s3().to_string()));
            headers.push(("x-amz-object-lock-retain-until-date", s3_time(until)));
            // A locked write must prove its body; a copy's is empty.
            headers.push(("content-md5", EMPTY_BODY_MD5.to_string()));
        }
        headers.extend(self.encryption_headers()?);
        let answer = self
            .send(reqwest::Method::PUT, key, "", &headers, Bytes::new())
            .await?;
        // S3 may answer a copy 200 and put the failure in the body.
        let body = String::from_utf8_lossy(&answer.body);
        if body.contains("<Error>") {
            let element = |name: &str| {
                super::requests::between(&body, &format!("<{name}>"), &format!("</{name}>"))
                    .unwrap_or_default()
            };
            return Err(object_store::Error::Generic {
                store: "S3",
                source: format!(
                    "CopyObject {key} from version {version}: <Code>{}</Code><Message>{}</Message>",
                    element("Code"),
                    element("Message")
                )
                .into(),
            });
        }
        Ok(())
    }

    /// Lengthens the lock on the current version of `key` to `until`
    /// (PutObjectRetention; S3 refuses to shorten a compliance lock).
    pub(super) async fn put_retention(
        &self,
        key: &str,
        mode: LockMode,
        until: jiff::Timestamp,
    ) -> object_store::Result<()> {
        use md5::Digest;
        let body = format!(
            "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>{}</Mode><RetainUntilDate>{}</RetainUntilDate></Retention>",
            mode.as_s3(),
            s3_time(until)
        );
        let md5 =
            base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body.as_bytes()));
        self.send(
            reqwest::Method::PUT,
            key,
            "retention",
            &[("content-md5", md5)],
            Bytes::from(body),
        )
        .await
        .map(drop)
    }

    /// The Object Lock of version `version` of `key`, from the headers of
    /// a HEAD of that version (S3 sends them to a caller allowed
    /// `s3:GetObjectRetention`, which the deletion role's policy grants;
    /// moto 5.2.5 has no GetObjectRetention). `None`: it has none.
    pub(super) async fn retention_of(
        &self,
        key: &str,
        version: &str,
    ) -> object_store::Result<Option<(LockMode, jiff::Timestamp)>> {
        let query = format!("versionId={}", uri_encode(version, true));
        let answer = self
            .send(reqwest::Method::HEAD, key, &query, &[], Bytes::new())
            .await?;
        Ok(lock_headers(&answer))
    }

    /// The lock on the current version of `key`: its mode and until when,
    /// from the headers of a HEAD (which S3 sends to a caller allowed
    /// `s3:GetObjectRetention`); `None` when the version has no lock.
    pub(super) async fn lock_of(
        &self,
        key: &str,
    ) -> object_store::Result<Option<(LockMode, jiff::Timestamp)>> {
        let answer = self
            .send(reqwest::Method::HEAD, key, "", &[], Bytes::new())
            .await?;
        Ok(lock_headers(&answer))
    }

    pub(super) async fn versioning(&self) -> object_store::Result<BucketVersioning> {
        #[derive(Deserialize)]
        struct VersioningConfiguration {
            #[serde(rename = "Status")]
            status: Option<String>,
        }
        let answer = self
            .send(reqwest::Method::GET, "", "versioning", &[], Bytes::new())
            .await?;
        let parsed: VersioningConfiguration = parse_xml("GetBucketVersioning", &answer.body)?;
        Ok(match parsed.status.as_deref() {
            Some("Enabled") => BucketVersioning::Enabled,
            Some("Suspended") => BucketVersioning::Suspended,
            _ => BucketVersioning::Off,
        })
    }

    /// The bucket's Object Lock, or `None` when it has none.
    pub(super) async fn object_lock(&self) -> object_store::Result<Option<BucketLock>> {
        #[derive(Deserialize)]
        struct ObjectLockConfiguration {
            #[serde(rename = "ObjectLockEnabled")]
            enabled: Option<String>,
            #[serde(rename = "Rule")]
            rule: Option<Rule>,
        }
        #[derive(Deserialize)]
        struct Rule {
            #[serde(rename = "DefaultRetention")]
            default: Option<DefaultRetention>,
        }
        #[derive(Deserialize)]
        struct DefaultRetention {
            #[serde(rename = "Mode")]
            mode: Option<String>,
            #[serde(rename = "Days")]
            days: Option<u32>,
            #[serde(rename = "Years")]
            years: Option<u32>,
        }
        let answer = match self
            .send(reqwest::Method::GET, "", "object-lock", &[], Bytes::new())
            .await
        {
            Ok(a) => a,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) if e.to_string().contains("ObjectLockConfigurationNotFound") => return Ok(None),
            Err(e) => return Err(e),
        };
        let parsed: ObjectLockConfiguration =
            parse_xml("GetObjectLockConfiguration", &answer.body)?;
        if parsed.enabled.as_deref() != Some("Enabled") {
            return Ok(None);
        }
        let default = parsed.rule.and_then(|r| r.default);
        Ok(Some(BucketLock {
            default_mode: default
                .as_ref()
                .and_then(|d| d.mode.as_deref())
                .and_then(LockMode::from_s3),
            default_days: default.and_then(|d| d.days.or(d.years.map(|y| y.saturating_mul(365)))),
        }))
    }

    /// One page of the versions and delete markers under the target's
    /// prefix, from `marker` (the last page's), and the next page's marker
    /// if there is one. Versions come before delete markers of the same
    /// key (the answer's two lists are read apart).
    pub(super) async fn versions_page(
        &self,
        marker: Option<&VersionsMarker>,
    ) -> object_store::Result<(Vec<ObjectVersion>, Option<VersionsMarker>)> {
        #[derive(Deserialize)]
        struct ListVersionsResult {
            #[serde(rename = "IsTruncated", default)]
            truncated: bool,
            #[serde(rename = "NextKeyMarker")]
            next_key: Option<String>,
            #[serde(rename = "NextVersionIdMarker")]
            next_version: Option<String>,
            #[serde(rename = "Version", default)]
            versions: Vec<Entry>,
            #[serde(rename = "DeleteMarker", default)]
            markers: Vec<Entry>,
        }
        #[derive(Deserialize)]
        struct Entry {
            #[serde(rename = "Key")]
            key: String,
            #[serde(rename = "VersionId")]
            version: String,
            #[serde(rename = "LastModified")]
            modified: String,
            #[serde(rename = "Size", default)]
            size: u64,
            #[serde(rename = "IsLatest", default)]
            latest: bool,
            #[serde(rename = "ETag")]
            etag: Option<String>,
        }
        let mut query = format!("prefix={}&versions=", uri_encode(&self.prefix, true));
        if let Some(n) = test_page_size() {
            query.push_str(&format!("&max-keys={n}"));
        }
        if let Some(m) = marker {
            query = format!("key-marker={}&{query}", uri_encode(&m.key, true));
            if let Some(v) = &m.version {
                query.push_str(&format!("&version-id-marker={}", uri_encode(v, true)));
            }
        }
        let answer = self
            .send(reqwest::Method::GET, "", &query, &[], Bytes::new())
            .await?;
        let page: ListVersionsResult = parse_xml("ListObjectVersions", &answer.body)?;
        let mut out = Vec::with_capacity(page.versions.len() + page.markers.len());
        for (entry, deleted) in page
            .versions
            .into_iter()
            .map(|e| (e, false))
            .chain(page.markers.into_iter().map(|e| (e, true)))
        {
            let Some(key) = entry.key.strip_prefix(&self.prefix) else {
                continue;
            };
            let modified = entry
                .modified
                .parse()
                .map_err(|_| object_store::Error::Generic {
                    store: "S3",
                    source: format!(
                        "ListObjectVersions: {}: LastModified {:?} is not a time",
                        entry.key, entry.modified
                    )
                    .into(),
                })?;
            out.push(ObjectVersion {
                key: key.to_string(),
                version: entry.version,
                modified,
                size: entry.size,
                deleted,
                latest: entry.latest,
                etag: entry.etag.filter(|e| !e.is_empty()),
            });
        }
        let next = match (page.truncated, page.next_key) {
            (true, Some(key)) => Some(VersionsMarker {
                key,
                version: page.next_version.filter(|v| !v.is_empty()),
            }),
            _ => None,
        };
        Ok((out, next))
    }

    /// Whether these credentials may delete objects outside the lock
    /// folders: a DELETE of a name nothing is written under. S3 answers a
    /// delete of a missing object as done, so no data is touched; on a
    /// versioned bucket the probe leaves one empty delete marker.
    pub(super) async fn may_delete(&self, probe_key: &str) -> object_store::Result<bool> {
        match self
            .send(reqwest::Method::DELETE, probe_key, "", &[], Bytes::new())
            .await
        {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(true),
            // Only a refusal by policy: a bad signature, unknown key or
            // skewed clock is also a 403, and says nothing of the policy.
            Err(e) if e.to_string().contains("<Code>AccessDenied</Code>") => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Pages of a version listing shorter than the store's 1,000, so that
/// the tests walk many pages: `GALLRA_TEST_LIST_VERSIONS_PAGE=N`, read only
/// by debug builds (the tests'), never by a release.
/// The lock an answer's headers state.
fn lock_headers(answer: &Answer) -> Option<(LockMode, jiff::Timestamp)> {
    let mode = answer
        .header("x-amz-object-lock-mode")
        .and_then(|m| LockMode::from_s3(&m));
    let until = answer
        .header("x-amz-object-lock-retain-until-date")
        .and_then(|t| t.parse().ok());
    mode.zip(until)
}

fn test_page_size() -> Option<u32> {
    if !cfg!(debug_assertions) {
        return None;
    }
    std::env::var("GALLRA_TEST_LIST_VERSIONS_PAGE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
}

/// S3's URI encoding: every byte but the unreserved characters (and `/`
/// in a path) as `%XX`, so that a tenant's escaped name (`caf%C3%A9`)
/// reaches the store as the name object_store writes.
fn uri_encode(text: &str, slash_too: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            b'/' if !slash_too => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A time as S3's lock headers take it, to the second.
fn s3_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn parse_xml<T: serde::de::DeserializeOwned>(
    operation: &str,
    body: &[u8],
) -> object_store::Result<T> {
    let text = std::str::from_utf8(body).map_err(|_| object_store::Error::Generic {
        store: "S3",
        source: format!("{operation}: the answer is not UTF-8").into(),
    })?;
    quick_xml::de::from_str(text).map_err(|e| object_store::Error::Generic {
        store: "S3",
        source: format!("{operation}: the answer does not parse: {e}").into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(url: &str, options: &[(AmazonS3ConfigKey, &str)]) -> S3Api {
        let mut b = AmazonS3Builder::new().with_url(url);
        for (k, v) in options {
            b = b.with_config(*k, *v);
        }
        let credentials = b.clone().build().unwrap().credentials().clone();
        S3Api::new(
            &b,
            credentials,
            "fleet",
            "web01",
            std::time::Duration::from_secs(5),
        )
        .unwrap()
    }

    #[test]
    fn urls_follow_object_stores_addressing() {
        let a = api(
            "s3://fleet/web01",
            &[
                (AmazonS3ConfigKey::Endpoint, "http://127.0.0.1:9000/"),
                (
                    AmazonS3ConfigKey::Client(object_store::ClientConfigKey::AllowHttp),
                    "true",
                ),
            ],
        );
        assert_eq!(
            a.url("tenants/acme/packs/ab/cd", ""),
            "http://127.0.0.1:9000/fleet/web01/tenants/acme/packs/ab/cd"
        );
        assert_eq!(
            a.url("", "versioning"),
            "http://127.0.0.1:9000/fleet?versioning"
        );
        // S3's encoding, as object_store's: a tenant's escaped name keeps
        // its '%' as "%25".
        assert_eq!(
            a.url("x y/é/caf%C3%A9", ""),
            "http://127.0.0.1:9000/fleet/web01/x%20y/%C3%A9/caf%25C3%25A9"
        );
        let a = api(
            "s3://fleet/web01",
            &[(AmazonS3ConfigKey::Region, "eu-north-1")],
        );
        assert_eq!(
            a.url("config", ""),
            "https://s3.eu-north-1.amazonaws.com/fleet/web01/config"
        );
        let mut b = AmazonS3Builder::new()
            .with_url("s3://fleet/web01")
            .with_config(AmazonS3ConfigKey::Endpoint, "http://127.0.0.1:9000");
        b = b.with_config(
            AmazonS3ConfigKey::Client(object_store::ClientConfigKey::AllowHttp),
            "false",
        );
        let credentials = b.clone().build().unwrap().credentials().clone();
        let e = S3Api::new(
            &b,
            credentials,
            "fleet",
            "",
            std::time::Duration::from_secs(1),
        )
        .err()
        .unwrap();
        assert!(e.contains("allow_http"), "{e}");
    }

    #[test]
    fn locked_puts_carry_the_targets_server_side_encryption() {
        use std::str::FromStr;
        let key = |k: &str| AmazonS3ConfigKey::from_str(k).unwrap();
        let a = api(
            "s3://fleet/web01",
            &[
                (key("aws_server_side_encryption"), "aws:kms"),
                (key("aws_sse_kms_key_id"), "arn:aws:kms:eu-north-1:1:key/k"),
            ],
        );
        assert_eq!(
            a.encryption.unwrap(),
            vec![
                ("x-amz-server-side-encryption", "aws:kms".to_string()),
                (
                    "x-amz-server-side-encryption-aws-kms-key-id",
                    "arn:aws:kms:eu-north-1:1:key/k".to_string()
                ),
            ]
        );
        assert_eq!(api("s3://fleet/web01", &[]).encryption.unwrap(), vec![]);
        let a = api(
            "s3://fleet/web01",
            &[
                (key("aws_server_side_encryption"), "sse-c"),
                (
                    key("aws_sse_customer_key_base64"),
                    "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
                ),
            ],
        );
        assert!(a.encryption.unwrap_err().contains("SSE-C"));
    }

    #[test]
    fn lock_times_are_whole_seconds_in_utc() {
        let t: jiff::Timestamp = "2026-12-03T15:04:05.25Z".parse().unwrap();
        assert_eq!(s3_time(t), "2026-12-03T15:04:05Z");
        let lock = ObjectLock {
            mode: LockMode::Compliance,
            days: 30,
        };
        assert_eq!(s3_time(lock.until(t)), "2027-01-02T15:04:06Z");
    }

    #[test]
    fn bucket_answers_parse() {
        #[derive(Deserialize)]
        struct VersioningConfiguration {
            #[serde(rename = "Status")]
            status: Option<String>,
        }
        let v: VersioningConfiguration = parse_xml(
            "x",
            br#"<?xml version="1.0" encoding="UTF-8"?><VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Enabled</Status></VersioningConfiguration>"#,
        )
        .unwrap();
        assert_eq!(v.status.as_deref(), Some("Enabled"));
        let v: VersioningConfiguration = parse_xml(
            "x",
            br#"<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"/>"#,
        )
        .unwrap();
        assert_eq!(v.status, None);
    }
}
