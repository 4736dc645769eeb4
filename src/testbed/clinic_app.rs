//! The demo clinic app: a small stand-in for the clinic's software that receives smshub's
//! Twilio-style webhooks, checks `X-Twilio-Signature` and answers with TwiML, as a real clinic
//! app would. `smshub demo` uses it to show an inbound SMS and its reply.

use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;

/// What the demo clinic app received.
#[derive(Default)]
pub struct ClinicApp {
    pub received: Mutex<Vec<Vec<(String, String)>>>,
}

/// The demo clinic app: checks X-Twilio-Signature, records the fields, answers with TwiML.
pub async fn start(app: Arc<ClinicApp>, twilio_token: &'static str) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let app = app.clone();
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let app = app.clone();
                async move {
                    let sig = req.headers().get("x-twilio-signature").and_then(|v| v.to_str().ok()).map(str::to_string);
                    let url = format!("http://{addr}{}", req.uri().path());
                    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    let fields: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
                    let valid =
                        sig.as_deref() == Some(crate::forward::twilio::signature(&url, &fields, twilio_token).as_str());
                    let (status, reply) = if valid {
                        if let Ok(mut r) = app.received.lock() {
                            r.push(fields);
                        }
                        (
                            200,
                            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>Thank you! We will call you to book a time.</Message></Response>",
                        )
                    } else {
                        (403, "<Response/>")
                    };
                    let mut resp = hyper::Response::new(Full::new(Bytes::from(reply)));
                    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
                    resp.headers_mut()
                        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/xml"));
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}
