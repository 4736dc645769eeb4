//! TwiML answers to the Twilio-style webhook: which reply SMS the clinic's software asks for.
//!
//! The answer comes from a server we do not control, so it is read by a small hand-written
//! reader for the subset TwiML needs, with hard bounds instead of a general XML parser:
//! no DTD at all (so no entity expansion, "billion laughs", or external entities), only the
//! five predefined entities and numeric character references, at most [`MAX_BYTES`] of input,
//! [`MAX_DEPTH`] levels of nesting and [`MAX_MESSAGES`] `<Message>`s.
//!
//! Understood: `<Response>` as the root; `<Message>text</Message>` or
//! `<Message><Body>text</Body></Message>`, with an optional `to` attribute. Other verbs
//! (`<Redirect>`, `<Media>`, …) are skipped and noted. An empty body, whitespace, or an empty
//! `<Response/>` means "no reply".

use std::fmt;

/// Largest answer body accepted (the HTTP client bounds what it reads to the same size).
pub const MAX_BYTES: usize = 64 * 1024;
/// Deepest element nesting accepted (TwiML needs 3: Response, Message, Body).
pub const MAX_DEPTH: usize = 16;
/// Most `<Message>`s accepted in one answer: each becomes an SMS we pay for.
pub const MAX_MESSAGES: usize = 10;
/// Most attributes on one element.
const MAX_ATTRIBUTES: usize = 32;

/// One reply the answer asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwimlReply {
    /// The `to` attribute; `None` means "to the sender of the incoming SMS".
    pub to: Option<String>,
    pub body: String,
}

/// A parsed answer: the replies, and what was skipped (for the delivery log).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Twiml {
    pub replies: Vec<TwimlReply>,
    pub notes: Vec<String>,
}

/// Why an answer was not accepted as TwiML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TwimlError {
    #[error("TwiML answer is {len} bytes; at most {max} are accepted")]
    TooLarge { len: usize, max: usize },
    #[error("answer has Content-Type {0:?}, which is not XML, so it is not TwiML (Twilio reports error 12300)")]
    NotXml(String),
    #[error("TwiML is not valid UTF-8 at byte {offset}")]
    NotUtf8 { offset: usize },
    #[error("TwiML refused at byte {offset}: {what} (DTDs and entity declarations are never processed)")]
    Forbidden { offset: usize, what: String },
    #[error("TwiML refused at byte {offset}: more than {max} <Message> elements")]
    TooManyMessages { offset: usize, max: usize },
    #[error("TwiML refused at byte {offset}: elements nested more than {max} deep")]
    TooDeep { offset: usize, max: usize },
    #[error("malformed TwiML at byte {offset}: {what}")]
    Malformed { offset: usize, what: String },
}

/// The replies asked for by an answer body (see [`parse`]).
pub fn parse_replies(body: &[u8], content_type: Option<&str>) -> Result<Vec<TwimlReply>, TwimlError> {
    parse(body, content_type).map(|t| t.replies)
}

/// Parses an answer body. `content_type` is the answer's `Content-Type` header: a non-empty
/// body must be XML (`text/xml`, `application/xml`, `*/*+xml`) or have no type at all.
pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<Twiml, TwimlError> {
    if body.len() > MAX_BYTES {
        return Err(TwimlError::TooLarge { len: body.len(), max: MAX_BYTES });
    }
    let text = std::str::from_utf8(body).map_err(|e| TwimlError::NotUtf8 { offset: e.valid_up_to() })?;
    let bom = if text.starts_with('\u{feff}') { '\u{feff}'.len_utf8() } else { 0 };
    if text[bom..].trim().is_empty() {
        return Ok(Twiml::default());
    }
    if let Some(ct) = content_type
        && !is_xml_content_type(ct)
    {
        return Err(TwimlError::NotXml(ct.to_string()));
    }
    Builder::default().run(Reader { text, pos: bom, start: bom })
}

fn is_xml_content_type(ct: &str) -> bool {
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "text/xml" || mime == "application/xml" || mime.ends_with("+xml")
}

// ---------------------------------------------------------------------------------------------
// Meaning: which elements make replies
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Builder {
    out: Twiml,
    /// Open elements: name and the byte offset of their `<`.
    stack: Vec<(String, usize)>,
    root_seen: bool,
    messages: usize,
    current: Option<TwimlReply>,
}

impl Builder {
    fn run(mut self, mut reader: Reader<'_>) -> Result<Twiml, TwimlError> {
        while let Some((offset, event)) = reader.next_event()? {
            match event {
                Event::Start { name, attrs, empty } => {
                    self.start(offset, &name, &attrs)?;
                    if empty {
                        self.end(offset, &name)?;
                    }
                }
                Event::End { name } => self.end(offset, &name)?,
                Event::Text(text) => self.text(offset, &text)?,
            }
        }
        if let Some((name, at)) = self.stack.last() {
            return Err(TwimlError::Malformed {
                offset: reader.text.len(),
                what: format!("<{name}> opened at byte {at} is never closed"),
            });
        }
        if !self.root_seen {
            return Err(TwimlError::Malformed { offset: reader.text.len(), what: "no <Response> element".into() });
        }
        Ok(self.out)
    }

    fn path(&self) -> Vec<&str> {
        self.stack.iter().map(|(n, _)| n.as_str()).collect()
    }

    fn start(&mut self, offset: usize, name: &str, attrs: &[(String, String)]) -> Result<(), TwimlError> {
        if self.stack.is_empty() {
            if self.root_seen {
                return Err(TwimlError::Malformed {
                    offset,
                    what: format!("<{name}> after the end of the root element"),
                });
            }
            if name != "Response" {
                return Err(TwimlError::Malformed {
                    offset,
                    what: format!("the root element is <{name}>, TwiML needs <Response>"),
                });
            }
            self.root_seen = true;
        } else if self.stack.len() >= MAX_DEPTH {
            return Err(TwimlError::TooDeep { offset, max: MAX_DEPTH });
        } else {
            match (self.path().as_slice(), name) {
                (["Response"], "Message") => {
                    self.messages += 1;
                    if self.messages > MAX_MESSAGES {
                        return Err(TwimlError::TooManyMessages { offset, max: MAX_MESSAGES });
                    }
                    let to = attrs
                        .iter()
                        .find(|(k, _)| k == "to")
                        .map(|(_, v)| v.trim().to_string())
                        .filter(|v| !v.is_empty());
                    self.current = Some(TwimlReply { to, body: String::new() });
                }
                (["Response", "Message"], "Body") => {}
                (["Response"], other) | (["Response", "Message"], other) => {
                    self.out
                        .notes
                        .push(format!("<{other}> at byte {offset} ignored: smshub only sends <Message> text"));
                }
                _ => {}
            }
        }
        self.stack.push((name.to_string(), offset));
        Ok(())
    }

    fn end(&mut self, offset: usize, name: &str) -> Result<(), TwimlError> {
        match self.stack.pop() {
            Some((open, _)) if open == name => {}
            Some((open, at)) => {
                return Err(TwimlError::Malformed {
                    offset,
                    what: format!("</{name}> closes <{open}> opened at byte {at}"),
                });
            }
            None => return Err(TwimlError::Malformed { offset, what: format!("</{name}> without an open element") }),
        }
        if self.stack.len() == 1
            && name == "Message"
            && let Some(mut reply) = self.current.take()
        {
            reply.body = reply.body.trim().to_string();
            if reply.body.is_empty() {
                self.out.notes.push(format!("empty <Message> ending at byte {offset} ignored"));
            } else {
                self.out.replies.push(reply);
            }
        }
        Ok(())
    }

    fn text(&mut self, offset: usize, text: &str) -> Result<(), TwimlError> {
        let blank = text.trim().is_empty();
        match self.path().as_slice() {
            [] if blank => Ok(()),
            [] => Err(TwimlError::Malformed { offset, what: "text outside the root element".into() }),
            ["Response", "Message"] | ["Response", "Message", "Body"] => {
                if let Some(reply) = self.current.as_mut() {
                    reply.body.push_str(text);
                }
                Ok(())
            }
            ["Response"] if !blank => {
                self.out.notes.push(format!("text directly inside <Response> at byte {offset} ignored"));
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Bytes: the bounded XML reader
// ---------------------------------------------------------------------------------------------

#[derive(Debug, PartialEq, Eq)]
enum Event {
    Start { name: String, attrs: Vec<(String, String)>, empty: bool },
    End { name: String },
    Text(String),
}

/// Reads events from the text; comments and processing instructions are skipped here.
struct Reader<'a> {
    text: &'a str,
    pos: usize,
    /// Where the document starts (after a BOM): the only place an XML declaration may be.
    start: usize,
}

impl fmt::Debug for Reader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reader at {}", self.pos)
    }
}

impl<'a> Reader<'a> {
    fn rest(&self) -> &'a str {
        self.text.get(self.pos..).unwrap_or("")
    }

    fn malformed(&self, offset: usize, what: impl Into<String>) -> TwimlError {
        TwimlError::Malformed { offset, what: what.into() }
    }

    /// Finds `end` after the current position; returns the text before it and moves past it.
    fn take_until(&mut self, end: &str, offset: usize, what: &str) -> Result<&'a str, TwimlError> {
        let rest = self.rest();
        match rest.find(end) {
            Some(i) => {
                self.pos += i + end.len();
                Ok(&rest[..i])
            }
            None => Err(self.malformed(offset, format!("{what} is never closed (no {end:?})"))),
        }
    }

    fn next_event(&mut self) -> Result<Option<(usize, Event)>, TwimlError> {
        loop {
            let rest = self.rest();
            if rest.is_empty() {
                return Ok(None);
            }
            let offset = self.pos;
            if !rest.starts_with('<') {
                let len = rest.find('<').unwrap_or(rest.len());
                self.pos += len;
                return Ok(Some((offset, Event::Text(decode_text(&rest[..len], offset)?))));
            }
            if rest.starts_with("<?") {
                self.pos += 2;
                let pi = self.take_until("?>", offset, "processing instruction")?;
                let target = pi.split(|c: char| c.is_ascii_whitespace()).next().unwrap_or("");
                if target.eq_ignore_ascii_case("xml") {
                    if offset != self.start {
                        return Err(self.malformed(offset, "XML declaration not at the start"));
                    }
                    check_declaration(pi, offset)?;
                }
                continue;
            }
            if rest.starts_with("<!--") {
                self.pos += 4;
                self.take_until("-->", offset, "comment")?;
                continue;
            }
            if rest.starts_with("<![CDATA[") {
                self.pos += 9;
                let data = self.take_until("]]>", offset, "CDATA section")?;
                return Ok(Some((offset, Event::Text(data.to_string()))));
            }
            if let Some(decl) = rest.strip_prefix("<!") {
                let word: String = decl.chars().take_while(|c| c.is_ascii_alphabetic()).take(16).collect();
                return Err(TwimlError::Forbidden { offset, what: format!("<!{word} declaration") });
            }
            if let Some(after) = rest.strip_prefix("</") {
                let name = read_name(after).ok_or_else(|| self.malformed(offset, "end tag without a name"))?;
                let tail = &after[name.len()..];
                let trimmed = tail.trim_start_matches(is_xml_space);
                if !trimmed.starts_with('>') {
                    return Err(self.malformed(offset, format!("end tag </{name} is not closed with '>'")));
                }
                self.pos += 2 + name.len() + (tail.len() - trimmed.len()) + 1;
                return Ok(Some((offset, Event::End { name: name.to_string() })));
            }
            return self.start_tag(offset).map(Some);
        }
    }

    fn start_tag(&mut self, offset: usize) -> Result<(usize, Event), TwimlError> {
        let after = &self.rest()[1..];
        let name = read_name(after).ok_or_else(|| self.malformed(offset, "'<' not followed by an element name"))?;
        self.pos += 1 + name.len();
        let mut attrs: Vec<(String, String)> = Vec::new();
        loop {
            let rest = self.rest();
            let trimmed = rest.trim_start_matches(is_xml_space);
            let had_space = trimmed.len() != rest.len();
            self.pos += rest.len() - trimmed.len();
            if trimmed.starts_with("/>") {
                self.pos += 2;
                return Ok((offset, Event::Start { name: name.to_string(), attrs, empty: true }));
            }
            if trimmed.starts_with('>') {
                self.pos += 1;
                return Ok((offset, Event::Start { name: name.to_string(), attrs, empty: false }));
            }
            if trimmed.is_empty() {
                return Err(self.malformed(offset, format!("tag <{name} is never closed")));
            }
            let at = self.pos;
            if !had_space {
                return Err(self.malformed(at, format!("expected whitespace, '>' or '/>' in <{name}>")));
            }
            let attr = read_name(trimmed).ok_or_else(|| self.malformed(at, format!("bad attribute in <{name}>")))?;
            self.pos += attr.len();
            let rest = self.rest().trim_start_matches(is_xml_space);
            let Some(rest) = rest.strip_prefix('=') else {
                return Err(self.malformed(at, format!("attribute {attr} in <{name}> has no '='")));
            };
            let rest = rest.trim_start_matches(is_xml_space);
            let quote = match rest.chars().next() {
                Some(q @ ('"' | '\'')) => q,
                _ => return Err(self.malformed(at, format!("attribute {attr} in <{name}> has no quoted value"))),
            };
            let value_start = self.text.len() - rest.len() + 1;
            let Some(len) = rest[1..].find(quote) else {
                return Err(self.malformed(at, format!("attribute {attr} in <{name}>: value is never closed")));
            };
            let raw = &rest[1..1 + len];
            if raw.contains('<') {
                return Err(self.malformed(at, format!("attribute {attr} in <{name}>: '<' in a value")));
            }
            let value = decode_text(raw, value_start)?;
            if attrs.iter().any(|(k, _)| k == attr) {
                return Err(self.malformed(at, format!("attribute {attr} given twice in <{name}>")));
            }
            if attrs.len() >= MAX_ATTRIBUTES {
                return Err(self.malformed(at, format!("more than {MAX_ATTRIBUTES} attributes in <{name}>")));
            }
            attrs.push((attr.to_string(), value));
            self.pos = value_start + len + 1;
        }
    }
}

fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// The XML name at the start of `s`, if there is one.
fn read_name(s: &str) -> Option<&str> {
    let mut end = 0;
    for (i, c) in s.char_indices() {
        let ok = if i == 0 {
            c.is_alphabetic() || c == '_' || c == ':'
        } else {
            c.is_alphanumeric() || matches!(c, '_' | ':' | '-' | '.')
        };
        if !ok {
            break;
        }
        end = i + c.len_utf8();
    }
    (end > 0).then(|| &s[..end])
}

/// Only UTF-8 (or its subset US-ASCII) is read: the body was already checked to be UTF-8, and
/// a declaration saying otherwise means the text would be misread.
fn check_declaration(pi: &str, offset: usize) -> Result<(), TwimlError> {
    if let Some(i) = pi.find("encoding") {
        let value = pi[i + "encoding".len()..]
            .trim_start_matches(is_xml_space)
            .trim_start_matches('=')
            .trim_start_matches(is_xml_space)
            .trim_start_matches(['"', '\''])
            .split(['"', '\''])
            .next()
            .unwrap_or("");
        let v = value.to_ascii_lowercase();
        if v != "utf-8" && v != "utf8" && v != "us-ascii" {
            return Err(TwimlError::Malformed {
                offset,
                what: format!("encoding {value:?} is not supported, only UTF-8"),
            });
        }
    }
    Ok(())
}

/// Replaces the predefined entities and character references in `raw`, which starts at byte
/// `offset` of the document. Anything else after `&` is an error, never passed through.
fn decode_text(raw: &str, offset: usize) -> Result<String, TwimlError> {
    if !raw.contains('&') {
        return Ok(raw.to_string());
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let at = offset + (raw.len() - rest.len()) + i;
        let after = &rest[i + 1..];
        let Some(semi) = after.find(';').filter(|&s| s <= 12) else {
            return Err(TwimlError::Malformed { offset: at, what: "'&' that does not start an entity".into() });
        };
        let name = &after[..semi];
        let c = match name {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = name.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = name.strip_prefix('#') {
                    dec.parse::<u32>().ok()
                } else {
                    return Err(TwimlError::Forbidden { offset: at, what: format!("undeclared entity &{name};") });
                };
                code.filter(|&c| is_xml_char(c)).and_then(char::from_u32).ok_or_else(|| TwimlError::Malformed {
                    offset: at,
                    what: format!("&{name}; is not a valid character reference"),
                })?
            }
        };
        out.push(c);
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// XML 1.0's `Char` production.
fn is_xml_char(c: u32) -> bool {
    matches!(c, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(to: Option<&str>, body: &str) -> TwimlReply {
        TwimlReply { to: to.map(str::to_string), body: body.to_string() }
    }

    #[test]
    fn valid_answers_give_the_expected_replies() {
        let cases: &[(&str, Vec<TwimlReply>)] = &[
            ("", vec![]),
            ("  \r\n\t ", vec![]),
            ("<Response/>", vec![]),
            ("<Response></Response>", vec![]),
            (r#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#, vec![]),
            (
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?> <Response> <Message>Thank you for your message. We will respond shortly.</Message> </Response>",
                vec![reply(None, "Thank you for your message. We will respond shortly.")],
            ),
            ("<Response><Message><Body>Hello</Body></Message></Response>", vec![reply(None, "Hello")]),
            (
                "<Response>\n  <Message to=\"+358401234567\">\n    <Body>Hi &amp; bye</Body>\n  </Message>\n</Response>\n",
                vec![reply(Some("+358401234567"), "Hi & bye")],
            ),
            (
                "<Response><Message>one</Message><Message to='+61412345678'>two</Message></Response>",
                vec![reply(None, "one"), reply(Some("+61412345678"), "two")],
            ),
            (
                "<Response><Message>&lt;b&gt; &quot;q&quot; &apos;a&apos; &#228;&#xE4; &#x1F436;</Message></Response>",
                vec![reply(None, "<b> \"q\" 'a' ää 🐶")],
            ),
            ("<Response><Message><![CDATA[a < b & c]]></Message></Response>", vec![reply(None, "a < b & c")]),
            ("\u{feff}<Response><Message>Hyvää päivää 😀</Message></Response>", vec![reply(None, "Hyvää päivää 😀")]),
            ("<Response><!-- a note --><Message>x<!-- inside --></Message></Response>", vec![reply(None, "x")]),
            ("<Response><Message to=\"\">x</Message></Response>", vec![reply(None, "x")]),
            ("<Response><Message>   </Message></Response>", vec![]),
            ("<Response><Message/></Response>", vec![]),
            ("<Response ><Message >x</Message ></Response >", vec![reply(None, "x")]),
            ("<Response><Redirect>https://x/y</Redirect><Message>x</Message></Response>", vec![reply(None, "x")]),
            (
                "<Response><Message><Body>pic</Body><Media>https://x/a.png</Media></Message></Response>",
                vec![reply(None, "pic")],
            ),
        ];
        for (input, expected) in cases {
            let got = parse_replies(input.as_bytes(), Some("text/xml; charset=utf-8"));
            assert_eq!(got.as_ref(), Ok(expected), "input: {input:?}");
        }
    }

    #[test]
    fn skipped_verbs_are_noted() {
        let t =
            parse(b"<Response><Redirect>x</Redirect><Message><Media>u</Media>b</Message></Response>", None).unwrap();
        assert_eq!(t.replies, vec![reply(None, "b")]);
        assert_eq!(t.notes.len(), 2, "{:?}", t.notes);
        assert!(t.notes[0].contains("<Redirect> at byte 10"), "{:?}", t.notes);
        assert!(t.notes[1].contains("<Media>"), "{:?}", t.notes);
    }

    #[test]
    fn the_content_type_must_be_xml_unless_the_body_is_empty() {
        let body = b"<Response><Message>x</Message></Response>";
        for ct in ["text/xml", "application/xml", "Text/XML; charset=UTF-8", "application/twiml+xml"] {
            assert_eq!(parse_replies(body, Some(ct)).unwrap().len(), 1, "{ct}");
        }
        assert_eq!(parse_replies(body, None).unwrap().len(), 1);
        for ct in ["text/html", "application/json", "text/plain"] {
            assert_eq!(parse_replies(body, Some(ct)), Err(TwimlError::NotXml(ct.to_string())));
            assert_eq!(parse_replies(b"", Some(ct)), Ok(vec![]), "empty body with {ct}");
        }
    }

    #[test]
    fn malicious_and_malformed_answers_are_refused_with_where() {
        let billion_laughs = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<Response><Message>&lol3;</Message></Response>"#;
        let xxe = r#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><Response><Message>&xxe;</Message></Response>"#;
        let deep = format!("<Response>{}{}</Response>", "<a>".repeat(40), "</a>".repeat(40));
        let many = format!("<Response>{}</Response>", "<Message>x</Message>".repeat(11));
        let cases: Vec<(String, TwimlError)> = vec![
            (billion_laughs.into(), TwimlError::Forbidden { offset: 22, what: "<!DOCTYPE declaration".into() }),
            (xxe.into(), TwimlError::Forbidden { offset: 21, what: "<!DOCTYPE declaration".into() }),
            (
                "<Response><Message>&xxe;</Message></Response>".into(),
                TwimlError::Forbidden { offset: 19, what: "undeclared entity &xxe;".into() },
            ),
            (
                "<Response><Message>a & b</Message></Response>".into(),
                TwimlError::Malformed { offset: 21, what: "'&' that does not start an entity".into() },
            ),
            (
                "<Response><Message>&#0;</Message></Response>".into(),
                TwimlError::Malformed { offset: 19, what: "&#0; is not a valid character reference".into() },
            ),
            (
                "<Response><Message>hi</Response>".into(),
                TwimlError::Malformed { offset: 21, what: "</Response> closes <Message> opened at byte 10".into() },
            ),
            (
                "<Response><Message>hi</Message>".into(),
                TwimlError::Malformed { offset: 31, what: "<Response> opened at byte 0 is never closed".into() },
            ),
            (
                "<Response><Message to=\"a<b\">hi</Message></Response>".into(),
                TwimlError::Malformed { offset: 19, what: "attribute to in <Message>: '<' in a value".into() },
            ),
            (
                "<Response><Message to=\"x>hi</Message></Response>".into(),
                TwimlError::Malformed { offset: 19, what: "attribute to in <Message>: value is never closed".into() },
            ),
            (
                "<Response><Message".into(),
                TwimlError::Malformed { offset: 10, what: "tag <Message is never closed".into() },
            ),
            (
                "<html><body>Error</body></html>".into(),
                TwimlError::Malformed { offset: 0, what: "the root element is <html>, TwiML needs <Response>".into() },
            ),
            (
                "<Response/><Response/>".into(),
                TwimlError::Malformed { offset: 11, what: "<Response> after the end of the root element".into() },
            ),
            ("OK".into(), TwimlError::Malformed { offset: 0, what: "text outside the root element".into() }),
            (
                "<?xml version=\"1.0\"?>".into(),
                TwimlError::Malformed { offset: 21, what: "no <Response> element".into() },
            ),
            (
                "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><Response/>".into(),
                TwimlError::Malformed {
                    offset: 0,
                    what: "encoding \"ISO-8859-1\" is not supported, only UTF-8".into(),
                },
            ),
            (
                "<Response><!-- never ends".into(),
                TwimlError::Malformed { offset: 10, what: "comment is never closed (no \"-->\")".into() },
            ),
            (
                "<Response><Message a='1' a='2'>x</Message></Response>".into(),
                TwimlError::Malformed { offset: 25, what: "attribute a given twice in <Message>".into() },
            ),
            (deep, TwimlError::TooDeep { offset: 55, max: MAX_DEPTH }),
            (many, TwimlError::TooManyMessages { offset: 210, max: MAX_MESSAGES }),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_replies(input.as_bytes(), Some("text/xml")), Err(expected), "input: {input:?}");
        }
    }

    #[test]
    fn oversized_and_non_utf8_answers_are_refused() {
        let huge = format!("<Response><Message>{}</Message></Response>", "a".repeat(MAX_BYTES));
        assert_eq!(parse_replies(huge.as_bytes(), None), Err(TwimlError::TooLarge { len: huge.len(), max: MAX_BYTES }));
        assert_eq!(
            parse_replies(b"<Response><Message>\xe4</Message></Response>", None),
            Err(TwimlError::NotUtf8 { offset: 19 })
        );
    }

    #[test]
    fn errors_read_as_sentences() {
        let e = parse_replies(b"<Response><Message>hi</Response>", None).unwrap_err();
        assert_eq!(e.to_string(), "malformed TwiML at byte 21: </Response> closes <Message> opened at byte 10");
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A crude fuzz pass: random bytes and random splices of valid TwiML.
        let seed = b"<?xml version=\"1.0\"?><Response><Message to='+1'>a &amp; <Body>b</Body></Message><!-- c --><![CDATA[d]]></Response>";
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..5000 {
            let mut input: Vec<u8> = seed.to_vec();
            for _ in 0..rng.usize(1..6) {
                let i = rng.usize(0..input.len());
                match rng.u8(0..3) {
                    0 => {
                        input.remove(i);
                    }
                    1 => input.insert(i, rng.u8(..)),
                    _ => {
                        let specials = b"<>&;/'\"!?[]-";
                        input.insert(i, specials[rng.usize(0..specials.len())]);
                    }
                }
            }
            let _ = parse(&input, None);
        }
    }
}
