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
        }
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

/// The value of an extended property in a message as Graph returns it.
pub fn property<'a>(m: &'a Value, id: &str) -> Option<&'a str> {
    m["singleValueExtendedProperties"]
        .as_array()?
        .iter()
        .find(|p| p["id"].as_str().is_some_and(|i| i.eq_ignore_ascii_case(id)))
        .and_then(|p| p["value"].as_str())
}
