//! Reading response bodies within a bound: a server (hostile, or simply broken) decides how many
//! bytes it sends, and a migration must not hold an endless body in memory.

/// Why a body could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(
        "the response is larger than {limit} bytes, more than any answer of this kind should be"
    )]
    TooLarge { limit: usize },
    #[error("reading the response: {0}")]
    Network(String),
}

/// The whole body, or [`BodyError::TooLarge`] as soon as it is known to pass `limit` bytes: from
/// its `Content-Length` before a byte is read, else while it arrives (never more than `limit`
/// bytes are held).
pub async fn read_capped(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut out = Vec::with_capacity(resp.content_length().unwrap_or(0) as usize);
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| BodyError::Network(e.without_url().to_string()))?
    {
        if out.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// At most the first `limit` bytes of the body, the rest left unread: enough to say why a
/// request was refused. A network error ends the read with what arrived.
pub async fn read_prefix(mut resp: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = limit - out.len();
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    out
}
