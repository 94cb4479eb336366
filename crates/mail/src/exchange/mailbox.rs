//! The Graph calls on one Exchange Online mailbox. Outlook allows an app 4 concurrent requests
//! per mailbox (<https://learn.microsoft.com/graph/throttling-limits#outlook-service-limits>):
//! every call here takes one of 4 slots, so the copy never provokes that 429.

use std::sync::Arc;

use bytes::Bytes;
use reqwest::Method;
use serde_json::{json, Value};
use tenantry_graph::client::{encode_path, Call};
use tenantry_graph::{GraphClient, GraphError};
use tokio::sync::Semaphore;

use super::message::{
    PR_CLIENT_SUBMIT_TIME, PR_MESSAGE_DELIVERY_TIME, PR_MESSAGE_FLAGS,
    PR_TRANSPORT_MESSAGE_HEADERS, SOURCE_SHA256,
};
use super::pacing::UploadPacer;

/// Outlook's per-mailbox concurrency limit.
pub const MAILBOX_CONCURRENCY: usize = 4;
/// Graph's request size limit: a create with inline attachments must stay below it
/// (attachments of 3 MB or more need an upload session:
/// <https://learn.microsoft.com/graph/outlook-large-attachments>).
pub const MAX_CREATE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Clone)]
pub struct Mailbox {
    client: GraphClient,
    upn: String,
    slots: Arc<Semaphore>,
    uploads: UploadPacer,
}

/// A child folder: id and display name.
#[derive(Debug, Clone)]
pub struct FolderRef {
    pub id: String,
    pub name: String,
}

impl Mailbox {
    pub fn new(client: GraphClient, upn: &str) -> Self {
        Self {
            client,
            upn: upn.to_string(),
            slots: Arc::new(Semaphore::new(MAILBOX_CONCURRENCY)),
            uploads: UploadPacer::default(),
        }
    }

    /// Paces uploads to `budget` bytes per `window` (Microsoft's 150 MB per 5 minutes unless
    /// told otherwise).
    pub fn with_upload_budget(mut self, budget: u64, window: std::time::Duration) -> Self {
        self.uploads = UploadPacer::new(budget, window);
        self
    }

    pub fn upn(&self) -> &str {
        &self.upn
    }

    pub fn describe(&self) -> String {
        format!("exchange://{}", self.upn)
    }

    fn path(&self, rest: &str) -> String {
        format!("/users/{}/{rest}", encode_path(&self.upn))
    }

    async fn call(&self, call: Call) -> Result<Value, GraphError> {
        let _slot = self.slots.acquire().await.expect("semaphore never closed");
        self.client.json(&call).await
    }

    /// Every item of a collection, page by page (each page one slot).
    async fn all(&self, first: String) -> Result<Vec<Value>, GraphError> {
        let mut out = Vec::new();
        let mut next = Some(first);
        while let Some(url) = next {
            let mut page = self.call(Call::new(Method::GET, url)).await?;
            if let Some(v) = page["value"].as_array_mut() {
                out.append(v);
            }
            next = page["@odata.nextLink"].as_str().map(str::to_string);
        }
        Ok(out)
    }

    /// A folder by well-known name (`inbox`, `sentitems`, ...), whatever its display name
    /// (<https://learn.microsoft.com/graph/api/resources/mailfolder>, "Well-known folder names").
    pub async fn well_known(&self, name: &str) -> Result<Option<String>, GraphError> {
        match self
            .call(Call::new(
                Method::GET,
                self.path(&format!("mailFolders/{name}")),
            ))
            .await
        {
            Ok(v) => Ok(v["id"].as_str().map(str::to_string)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn children(&self, parent: &str) -> Result<Vec<FolderRef>, GraphError> {
        let url = self.path(&format!(
            "mailFolders/{}/childFolders?$top=100",
            encode_path(parent)
        ));
        Ok(self
            .all(url)
            .await?
            .into_iter()
            .filter_map(|f| {
                Some(FolderRef {
                    id: f["id"].as_str()?.to_string(),
                    name: f["displayName"].as_str()?.to_string(),
                })
            })
            .collect())
    }

    /// The child folder `name` of `parent`, created when missing (names compare
    /// case-insensitively, as Exchange does).
    pub async fn ensure_child(&self, parent: &str, name: &str) -> Result<String, GraphError> {
        let find = |list: Vec<FolderRef>| {
            list.into_iter()
                .find(|f| f.name.to_lowercase() == name.to_lowercase())
                .map(|f| f.id)
        };
        if let Some(id) = find(self.children(parent).await?) {
            return Ok(id);
        }
        let call = Call::new(
            Method::POST,
            self.path(&format!("mailFolders/{}/childFolders", encode_path(parent))),
        )
        .json(&json!({"displayName": name}));
        match self.call(call).await {
            Ok(v) => Ok(v["id"].as_str().unwrap_or_default().to_string()),
            // Created meanwhile (or by a lost answer): look again.
            Err(e) if e.status() == Some(409) => find(self.children(parent).await?).ok_or(e),
            Err(e) => Err(e),
        }
    }

    /// Creates a message. Not retried after a lost answer: the caller looks first.
    pub async fn create_message(&self, folder: &str, body: Bytes) -> Result<String, GraphError> {
        let mut call = Call::new(
            Method::POST,
            self.path(&format!("mailFolders/{}/messages", encode_path(folder))),
        )
        .not_idempotent();
        // Within the upload budget before a slot is taken: a waiting upload holds no slot.
        let _counted = self.uploads.reserve(body.len() as u64).await;
        call.body = Some((body, "application/json"));
        let v = self.call(call).await?;
        Ok(v["id"].as_str().unwrap_or_default().to_string())
    }

    /// Ids of the messages of `folder` whose SourceSha256 property is `sha`
    /// (<https://learn.microsoft.com/graph/api/singlevaluelegacyextendedproperty-get>).
    pub async fn find_by_sha(&self, folder: &str, sha: &str) -> Result<Vec<String>, GraphError> {
        let filter = format!(
            "singleValueExtendedProperties/any(ep: ep/id eq '{SOURCE_SHA256}' and ep/value eq '{sha}')"
        );
        let url = self.path(&format!(
            "mailFolders/{}/messages?$select=id&$filter={}",
            encode_path(folder),
            encode_path(&filter)
        ));
        Ok(self
            .all(url)
            .await?
            .iter()
            .filter_map(|m| m["id"].as_str().map(str::to_string))
            .collect())
    }

    /// Whether a folder holds any message (one short page): a restored state needs look-ups
    /// only where something may already have been copied.
    pub async fn holds_messages(&self, folder: &str) -> Result<bool, GraphError> {
        let url = self.path(&format!(
            "mailFolders/{}/messages?$top=1&$select=id",
            encode_path(folder)
        ));
        let page = self.call(Call::new(Method::GET, url)).await?;
        Ok(page["value"].as_array().is_some_and(|v| !v.is_empty()))
    }

    /// Every message of a folder with what verification compares.
    pub async fn list_messages(&self, folder: &str) -> Result<Vec<Value>, GraphError> {
        let expand = format!(
            "singleValueExtendedProperties($filter=id eq '{SOURCE_SHA256}' or id eq '{PR_MESSAGE_FLAGS}' or id eq '{PR_MESSAGE_DELIVERY_TIME}' or id eq '{PR_CLIENT_SUBMIT_TIME}' or id eq '{PR_TRANSPORT_MESSAGE_HEADERS}')"
        );
        let url = self.path(&format!(
            "mailFolders/{}/messages?$top=100&$expand={}",
            encode_path(folder),
            encode_path(&expand)
        ));
        self.all(url).await
    }

    pub async fn attachments(&self, id: &str) -> Result<Vec<Value>, GraphError> {
        self.all(self.path(&format!("messages/{}/attachments", encode_path(id))))
            .await
    }

    pub async fn patch(&self, id: &str, v: &Value) -> Result<(), GraphError> {
        self.call(
            Call::new(
                Method::PATCH,
                self.path(&format!("messages/{}", encode_path(id))),
            )
            .json(v),
        )
        .await
        .map(|_| ())
    }
}

/// Bytes per PUT to an attachment upload session: Microsoft says "up to 4 MB each time"
/// (<https://learn.microsoft.com/graph/api/attachment-createuploadsession>).
pub const ATTACHMENT_CHUNK: usize = 3 * 1024 * 1024;

impl Mailbox {
    /// (name, size) of each attachment of a message.
    pub async fn attachment_keys(&self, id: &str) -> Result<Vec<(String, u64)>, GraphError> {
        let url = self.path(&format!(
            "messages/{}/attachments?$select=name,size",
            encode_path(id)
        ));
        Ok(self
            .all(url)
            .await?
            .iter()
            .map(|a| {
                (
                    a["name"].as_str().unwrap_or_default().to_string(),
                    a["size"].as_u64().unwrap_or(0),
                )
            })
            .collect())
    }

    /// Adds a `fileAttachment` of under 3 MB to an existing message
    /// (<https://learn.microsoft.com/graph/api/message-post-attachments>). Not re-sent after a
    /// lost answer: the next run finds what is there by name and size.
    pub async fn add_attachment(&self, id: &str, a: &Value) -> Result<(), GraphError> {
        let body = Bytes::from(a.to_string());
        let _counted = self.uploads.reserve(body.len() as u64).await;
        let mut call = Call::new(
            Method::POST,
            self.path(&format!("messages/{}/attachments", encode_path(id))),
        )
        .not_idempotent();
        call.body = Some((body, "application/json"));
        self.call(call).await.map(|_| ())
    }

    /// Attaches `bytes` (3 MB to 150 MB) to an existing message through an upload session
    /// (<https://learn.microsoft.com/graph/outlook-large-attachments>): the session from Graph,
    /// then the ranges in order to its pre-authenticated `uploadUrl`, which must not receive the
    /// access token. `a` gives the name, content type, inline state and content id.
    pub async fn upload_attachment(
        &self,
        id: &str,
        a: &Value,
        bytes: &[u8],
    ) -> Result<(), GraphError> {
        let mut item = json!({
            "attachmentType": "file",
            "name": a["name"],
            "size": bytes.len(),
            "contentType": a["contentType"],
            "isInline": a["isInline"].as_bool().unwrap_or(false),
        });
        if let Some(cid) = a["contentId"].as_str() {
            item["contentId"] = json!(cid);
        }
        let session = self
            .call(
                Call::new(
                    Method::POST,
                    self.path(&format!(
                        "messages/{}/attachments/createUploadSession",
                        encode_path(id)
                    )),
                )
                .json(&json!({ "AttachmentItem": item })),
            )
            .await?;
        let Some(url) = session["uploadUrl"].as_str() else {
            return Err(GraphError::Permanent {
                status: 201,
                code: None,
                message: "createUploadSession answered without an uploadUrl".into(),
                ids: Default::default(),
            });
        };
        let total = bytes.len();
        for (n, chunk) in bytes.chunks(ATTACHMENT_CHUNK).enumerate() {
            let start = n * ATTACHMENT_CHUNK;
            let _counted = self.uploads.reserve(chunk.len() as u64).await;
            let call = Call::new(Method::PUT, url)
                .unauthenticated()
                .not_idempotent()
                .header(
                    "Content-Range",
                    format!("bytes {start}-{}/{total}", start + chunk.len() - 1),
                )
                .bytes(Bytes::copy_from_slice(chunk));
            self.call(call).await?;
        }
        Ok(())
    }
}

/// The value of an extended property in a message as Graph returns it.
pub fn property<'a>(m: &'a Value, id: &str) -> Option<&'a str> {
    m["singleValueExtendedProperties"]
        .as_array()?
        .iter()
        .find(|p| p["id"].as_str().is_some_and(|i| i.eq_ignore_ascii_case(id)))
        .and_then(|p| p["value"].as_str())
}
