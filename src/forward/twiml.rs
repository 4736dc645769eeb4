//! TwiML answers to the Twilio-style webhook: which reply SMS the clinic's software asks for.
//!
//! The answer comes from a server we do not control. It is parsed by `roxmltree` (a maintained,
//! non-validating XML parser without I/O that builds a read-only tree) under hard bounds: no DTD at
//! all (so no entity expansion, "billion laughs", or external entities; only the five predefined
//! entities and character references), at most [`MAX_BYTES`] of input and [`MAX_NODES`] nodes while
//! parsing; then, on the tree, at most [`MAX_DEPTH`] levels of nesting and [`MAX_MESSAGES`]
//! `<Message>`s. This module turns roxmltree's errors into [`TwimlError`]s with byte offsets.
//!
//! Understood: `<Response>` as the root; `<Message>text</Message>` or
//! `<Message><Body>text</Body></Message>`, with an optional `to` attribute. Other verbs
//! (`<Redirect>`, `<Media>`, …) are skipped and noted. An empty body, whitespace, or an empty
//! `<Response/>` means "no reply".

use roxmltree::{Document, Node, ParsingOptions, TextPos};

/// Largest answer body accepted (the HTTP client bounds what it reads to the same size).
pub const MAX_BYTES: usize = 64 * 1024;
/// Most XML nodes (elements, text runs, comments, processing instructions) in one answer; the
/// parser stops at this many, so a body of thousands of tiny elements cannot grow a large tree.
/// Ten pretty-printed `<Message>`s need about a hundred.
pub const MAX_NODES: u32 = 2048;
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
    #[error("TwiML refused: more than {max} XML nodes (elements, text runs, comments); TwiML needs far fewer")]
    TooManyNodes { max: u32 },
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
    // The whole text, BOM included (roxmltree skips it), so every offset is a byte of the body.
    let options = ParsingOptions { allow_dtd: false, nodes_limit: MAX_NODES, ..ParsingOptions::default() };
    let doc = Document::parse_with_options(text, options).map_err(|e| xml_error(text, &e))?;
    check_declarations(&doc, bom)?;
    let response = doc.root_element();
    if response.tag_name().name() != "Response" {
        return Err(TwimlError::Malformed {
            offset: response.range().start,
            what: format!("the root element is <{}>, TwiML needs <Response>", response.tag_name().name()),
        });
    }
    check_bounds(response, 1, &mut 0)?;
    Ok(read_response(response))
}

fn is_xml_content_type(ct: &str) -> bool {
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "text/xml" || mime == "application/xml" || mime.ends_with("+xml")
}

// ---------------------------------------------------------------------------------------------
// Meaning: which elements make replies
// ---------------------------------------------------------------------------------------------

/// Checks `element` and everything under it, in document order (so the first offending element is
/// the one reported): nesting, attributes, and the count of `<Message>`s directly in `<Response>`.
/// Recursion stops at [`MAX_DEPTH`], so a deep tree cannot exhaust the stack.
fn check_bounds(element: Node<'_, '_>, depth: usize, messages: &mut usize) -> Result<(), TwimlError> {
    let offset = element.range().start;
    if depth > MAX_DEPTH {
        return Err(TwimlError::TooDeep { offset, max: MAX_DEPTH });
    }
    if depth == 2 && element.tag_name().name() == "Message" {
        *messages += 1;
        if *messages > MAX_MESSAGES {
            return Err(TwimlError::TooManyMessages { offset, max: MAX_MESSAGES });
        }
    }
    if element.attributes().len() > MAX_ATTRIBUTES {
        return Err(TwimlError::Malformed {
            offset,
            what: format!("more than {MAX_ATTRIBUTES} attributes in <{}>", element.tag_name().name()),
        });
    }
    for child in element.children().filter(Node::is_element) {
        check_bounds(child, depth + 1, messages)?;
    }
    Ok(())
}

fn read_response(response: Node<'_, '_>) -> Twiml {
    let mut out = Twiml::default();
    for child in response.children() {
        if child.is_text() {
            if !child.text().unwrap_or("").trim().is_empty() {
                out.notes.push(format!("text directly inside <Response> at byte {} ignored", child.range().start));
            }
        } else if child.is_element() {
            match child.tag_name().name() {
                "Message" => read_message(child, &mut out),
                other => out.notes.push(skipped(other, child)),
            }
        }
    }
    out
}

/// A `<Message>`'s text is its own text and that of its `<Body>`s, trimmed; anything deeper
/// (`<Media>`, a `<Body>`'s children) is not part of it.
fn read_message(message: Node<'_, '_>, out: &mut Twiml) {
    let mut body = String::new();
    for child in message.children() {
        if child.is_text() {
            body.push_str(child.text().unwrap_or(""));
        } else if child.is_element() {
            match child.tag_name().name() {
                "Body" => child.children().filter(Node::is_text).for_each(|t| body.push_str(t.text().unwrap_or(""))),
                other => out.notes.push(skipped(other, child)),
            }
        }
    }
    let body = body.trim();
    if body.is_empty() {
        out.notes.push(format!("empty <Message> at byte {} ignored", message.range().start));
        return;
    }
    let to = message.attribute("to").map(str::trim).filter(|to| !to.is_empty()).map(str::to_string);
    out.replies.push(TwimlReply { to, body: body.to_string() });
}

fn skipped(name: &str, node: Node<'_, '_>) -> String {
    format!("<{name}> at byte {} ignored: smshub only sends <Message> text", node.range().start)
}

// ---------------------------------------------------------------------------------------------
// Bytes: what roxmltree leaves to us
// ---------------------------------------------------------------------------------------------

/// Only UTF-8 (or its subset US-ASCII) is read: the body was already checked to be UTF-8, and a
/// declaration saying otherwise means the text would be misread. roxmltree checks that a leading
/// `<?xml ` declaration is well formed but not the encoding it names, and takes `<?XML …?>` or
/// `<?xml<tab>…?>` for processing instructions; to us all of them are declarations.
fn check_declarations(doc: &Document<'_>, start: usize) -> Result<(), TwimlError> {
    if let Some(decl) = doc.input_text()[start..].strip_prefix("<?xml ") {
        check_encoding(&decl[..decl.find("?>").unwrap_or(decl.len())], start)?;
    }
    for node in doc.descendants() {
        if let Some(pi) = node.pi()
            && pi.target.eq_ignore_ascii_case("xml")
        {
            let offset = node.range().start;
            if offset != start {
                return Err(TwimlError::Malformed { offset, what: "XML declaration not at the start".into() });
            }
            check_encoding(pi.value.unwrap_or(""), offset)?;
        }
    }
    Ok(())
}

/// `decl` is the inside of an XML declaration at byte `offset`.
fn check_encoding(decl: &str, offset: usize) -> Result<(), TwimlError> {
    let Some(i) = decl.find("encoding") else { return Ok(()) };
    let value = decl[i + "encoding".len()..]
        .trim_start_matches(is_xml_space)
        .trim_start_matches('=')
        .trim_start_matches(is_xml_space)
        .trim_start_matches(['"', '\''])
        .split(['"', '\''])
        .next()
        .unwrap_or("");
    let v = value.to_ascii_lowercase();
    if v != "utf-8" && v != "utf8" && v != "us-ascii" {
        return Err(TwimlError::Malformed { offset, what: format!("encoding {value:?} is not supported, only UTF-8") });
    }
    Ok(())
}

fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

const ENDS_IN_MARKUP: &str = "the answer ends inside a tag or other markup";

/// Our error for roxmltree's, in our words where an answer plausibly goes wrong and in roxmltree's
/// (without its row:column) otherwise. Errors roxmltree reports without a position are about the
/// end of the text, except the DTD and the node limit.
fn xml_error(text: &str, e: &roxmltree::Error) -> TwimlError {
    use roxmltree::Error as X;
    let malformed = |offset, what: String| TwimlError::Malformed { offset, what };
    let at = |pos: TextPos| byte_offset(text, pos);
    match e {
        // roxmltree gives no position for a DTD. It stops at the first `<!DOCTYPE` after the XML
        // declaration, comments and processing instructions: the offset is off only if one of those
        // contains the word.
        X::DtdDetected => {
            TwimlError::Forbidden { offset: text.find("<!DOCTYPE").unwrap_or(0), what: "<!DOCTYPE declaration".into() }
        }
        X::UnknownEntityReference(name, pos) => {
            TwimlError::Forbidden { offset: at(*pos), what: format!("undeclared entity &{name};") }
        }
        // Text or markup after the root element, a `<!` in content that starts no comment or CDATA,
        // or the answer ending right after a `<`.
        X::UnknownToken(pos) => {
            let offset = at(*pos);
            let rest = &text[offset..];
            let word: String =
                rest.strip_prefix("<!").unwrap_or("").chars().take_while(char::is_ascii_alphabetic).take(16).collect();
            if !word.is_empty() {
                TwimlError::Forbidden { offset, what: format!("<!{word} declaration") }
            } else if ["<!--", "<![CDATA["].iter().any(|markup| markup.starts_with(rest)) {
                malformed(offset, ENDS_IN_MARKUP.into())
            } else if rest.starts_with("<!") {
                malformed(offset, "'<!' that starts no comment or CDATA section".into())
            } else if rest.starts_with('<') {
                malformed(offset, "an element or other markup after the end of the root element".into())
            } else {
                malformed(offset, "text outside the root element".into())
            }
        }
        X::NodesLimitReached => TwimlError::TooManyNodes { max: MAX_NODES },
        X::NoRootNode => malformed(text.len(), "no <Response> element".into()),
        X::UnclosedRootNode => malformed(text.len(), "the answer ends before its root element is closed".into()),
        X::UnexpectedEndOfStream => malformed(text.len(), ENDS_IN_MARKUP.into()),
        X::UnexpectedCloseTag(open, close, pos) => {
            malformed(at(*pos), format!("</{close}> found while <{open}> is still open"))
        }
        X::MalformedEntityReference(pos) => {
            malformed(at(*pos), "'&' that does not start an entity or a valid character reference".into())
        }
        X::InvalidAttributeValue(pos) => malformed(at(*pos), "'<' in an attribute value".into()),
        // An attribute value is read up to its closing quote; '<' stops it.
        X::InvalidChar(b'"' | b'\'', b'<', pos) => {
            malformed(at(*pos), "'<' in an attribute value, or a value that is never closed".into())
        }
        X::InvalidString(end @ ("-->" | "]]>" | "?>"), pos) => {
            let what = match *end {
                "-->" => "comment",
                "]]>" => "CDATA section",
                _ => "processing instruction",
            };
            malformed(at(*pos), format!("{what} not closed with {end:?}"))
        }
        X::DuplicatedAttribute(name, pos) => malformed(at(*pos), format!("attribute {name} given twice")),
        X::UnexpectedDeclaration(pos) => malformed(at(*pos), "XML declaration not at the start".into()),
        other => {
            let pos = other.pos();
            malformed(at(pos), other.to_string().replacen(&format!(" at {pos}"), "", 1))
        }
    }
}

/// The byte offset of a roxmltree position: rows are 1-based and split at '\n', columns are
/// 1-based and count characters.
fn byte_offset(text: &str, pos: TextPos) -> usize {
    let rows_before = pos.row.saturating_sub(1) as usize;
    let row_start: usize = text.split_inclusive('\n').take(rows_before).map(str::len).sum();
    let col = pos.col.saturating_sub(1) as usize;
    text[row_start..].char_indices().nth(col).map_or(text.len(), |(i, _)| row_start + i)
}

/// The notes of one answer as one short line for the log: the first two and how many more,
/// control characters escaped. `None` when there are none.
pub fn summarise_notes(notes: &[String]) -> Option<String> {
    const SHOWN: usize = 2;
    if notes.is_empty() {
        return None;
    }
    let mut line: String =
        notes.iter().take(SHOWN).map(|n| n.escape_debug().to_string()).collect::<Vec<_>>().join("; ");
    if notes.len() > SHOWN {
        line.push_str(&format!("; and {} more", notes.len() - SHOWN));
    }
    Some(line)
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
        assert_eq!(summarise_notes(&t.notes).unwrap().matches("; ").count(), 1, "one line");
        let many: Vec<String> = (0..5000).map(|i| format!("note {i}\n")).collect();
        let line = summarise_notes(&many).unwrap();
        assert!(line.ends_with("and 4998 more") && !line.contains('\n'), "{line}");
        assert_eq!(summarise_notes(&[]), None);
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
                TwimlError::Malformed {
                    offset: 21,
                    what: "'&' that does not start an entity or a valid character reference".into(),
                },
            ),
            (
                "<Response><Message>&#0;</Message></Response>".into(),
                TwimlError::Malformed {
                    offset: 19,
                    what: "'&' that does not start an entity or a valid character reference".into(),
                },
            ),
            (
                "<Response><Message>hi</Response>".into(),
                TwimlError::Malformed { offset: 21, what: "</Response> found while <Message> is still open".into() },
            ),
            (
                "<Response><Message>hi</Message>".into(),
                TwimlError::Malformed { offset: 31, what: "the answer ends before its root element is closed".into() },
            ),
            (
                "<Response><Message to=\"a<b\">hi</Message></Response>".into(),
                TwimlError::Malformed {
                    offset: 24,
                    what: "'<' in an attribute value, or a value that is never closed".into(),
                },
            ),
            (
                "<Response><Message to=\"x>hi</Message></Response>".into(),
                TwimlError::Malformed {
                    offset: 27,
                    what: "'<' in an attribute value, or a value that is never closed".into(),
                },
            ),
            (
                "<Response><Message".into(),
                TwimlError::Malformed { offset: 18, what: "the answer ends before its root element is closed".into() },
            ),
            (
                "<html><body>Error</body></html>".into(),
                TwimlError::Malformed { offset: 0, what: "the root element is <html>, TwiML needs <Response>".into() },
            ),
            (
                "<Response/><Response/>".into(),
                TwimlError::Malformed {
                    offset: 11,
                    what: "an element or other markup after the end of the root element".into(),
                },
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
                TwimlError::Malformed { offset: 25, what: "comment not closed with \"-->\"".into() },
            ),
            (
                "<Response><Message a='1' a='2'>x</Message></Response>".into(),
                TwimlError::Malformed { offset: 25, what: "attribute a given twice".into() },
            ),
            (deep, TwimlError::TooDeep { offset: 55, max: MAX_DEPTH }),
            (many, TwimlError::TooManyMessages { offset: 210, max: MAX_MESSAGES }),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_replies(input.as_bytes(), Some("text/xml")), Err(expected), "input: {input:?}");
        }
    }

    #[test]
    fn dtds_entity_declarations_and_foreign_encodings_are_refused() {
        let forbidden = |offset, what: &str| TwimlError::Forbidden { offset, what: what.into() };
        let cases: Vec<(&str, TwimlError)> = vec![
            // An external DTD alone (no internal subset) would be fetched by a validating parser.
            (
                r#"<!DOCTYPE Response SYSTEM "http://evil.example/x.dtd"><Response/>"#,
                forbidden(0, "<!DOCTYPE declaration"),
            ),
            (
                r#"<!DOCTYPE r [<!ENTITY % p SYSTEM "http://evil.example/p">%p;]><Response/>"#,
                forbidden(0, "<!DOCTYPE declaration"),
            ),
            ("\u{feff}<!-- hi --><!DOCTYPE Response><Response/>", forbidden(14, "<!DOCTYPE declaration")),
            (r#"<Response><!ENTITY x "y"><Message>&x;</Message></Response>"#, forbidden(10, "<!ENTITY declaration")),
            ("<Response><Message>&nbsp;</Message></Response>", forbidden(19, "undeclared entity &nbsp;")),
            (
                "<?xml\tversion=\"1.0\" encoding=\"latin1\"?><Response/>",
                TwimlError::Malformed { offset: 0, what: "encoding \"latin1\" is not supported, only UTF-8".into() },
            ),
            (
                "\u{feff}<?XML version=\"1.0\" encoding='UTF-16'?><Response/>",
                TwimlError::Malformed { offset: 3, what: "encoding \"UTF-16\" is not supported, only UTF-8".into() },
            ),
            (
                "<Response><?xml version=\"1.0\"?></Response>",
                TwimlError::Malformed { offset: 10, what: "XML declaration not at the start".into() },
            ),
            (
                "<Response><?XML version=\"1.0\"?></Response>",
                TwimlError::Malformed { offset: 10, what: "XML declaration not at the start".into() },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_replies(input.as_bytes(), None), Err(expected), "input: {input:?}");
        }
        for ok in ["<?xml version='1.0' encoding='us-ascii'?><Response/>", "<?xml-stylesheet href='a'?><Response/>"] {
            assert_eq!(parse_replies(ok.as_bytes(), None), Ok(vec![]), "input: {ok:?}");
        }
    }

    #[test]
    fn cut_off_and_stray_markup_is_refused_with_where() {
        let cases: &[(&str, usize, &str)] = &[
            ("<Response><", 10, ENDS_IN_MARKUP),
            ("<Response>x<", 11, ENDS_IN_MARKUP),
            ("<Response><!-", 10, ENDS_IN_MARKUP),
            ("<Response><![CDA", 10, ENDS_IN_MARKUP),
            ("<Response><Message>x</Message", 29, ENDS_IN_MARKUP),
            ("<Response a=", 12, ENDS_IN_MARKUP),
            ("<Response><![CDATA[x", 20, "CDATA section not closed with \"]]>\""),
            ("<Response><!1></Response>", 10, "'<!' that starts no comment or CDATA section"),
            ("<Response/></x>", 11, "an element or other markup after the end of the root element"),
            ("<Response/>\nOK", 12, "text outside the root element"),
        ];
        for &(input, offset, what) in cases {
            let expected = TwimlError::Malformed { offset, what: what.into() };
            assert_eq!(parse_replies(input.as_bytes(), None), Err(expected), "input: {input:?}");
        }
    }

    #[test]
    fn many_tiny_nodes_stop_at_the_node_limit() {
        let nodes = MAX_NODES as usize;
        for filler in ["<a/>", "<!---->", "<?p?>", "<b>x</b>"] {
            let input = format!("<Response>{}</Response>", filler.repeat(nodes));
            assert!(input.len() <= MAX_BYTES, "{filler}: the size bound must not be what refuses it");
            assert_eq!(parse_replies(input.as_bytes(), None), Err(TwimlError::TooManyNodes { max: MAX_NODES }));
        }
        // Never closed: the parser stops at the limit instead of reading 60 KiB of open tags.
        let open = format!("<Response>{}", "<a>".repeat(20_000));
        assert_eq!(parse_replies(open.as_bytes(), None), Err(TwimlError::TooManyNodes { max: MAX_NODES }));
        // A generous real answer is far below it.
        let message = "\n  <!-- reply -->\n  <Message to=\"+358401234567\">\n    <Body>Hei</Body>\n  </Message>";
        let generous = format!("<Response>{}\n</Response>", message.repeat(MAX_MESSAGES));
        assert_eq!(parse_replies(generous.as_bytes(), None).map(|r| r.len()), Ok(MAX_MESSAGES));
    }

    #[test]
    fn nesting_far_beyond_the_depth_limit_is_refused_without_deep_recursion() {
        let deep = format!("<Response>{}{}</Response>", "<a>".repeat(2000), "</a>".repeat(2000));
        assert_eq!(parse_replies(deep.as_bytes(), None), Err(TwimlError::TooDeep { offset: 55, max: MAX_DEPTH }));
    }

    #[test]
    fn too_many_attributes_on_one_element_are_refused() {
        let attrs: String = (0..=MAX_ATTRIBUTES).map(|i| format!(" a{i}='x'")).collect();
        let input = format!("<Response><Message{attrs}>hi</Message></Response>");
        assert_eq!(
            parse_replies(input.as_bytes(), None),
            Err(TwimlError::Malformed { offset: 10, what: "more than 32 attributes in <Message>".into() })
        );
    }

    #[test]
    fn error_offsets_are_bytes_across_lines_and_multibyte_text() {
        let input = "\u{feff}<Response>\n  <Message>Hyvää päivää 😀\n  ja & näkemiin</Message>\n</Response>";
        let amp = input.find(" & ").unwrap() + 1;
        let Err(TwimlError::Malformed { offset, .. }) = parse_replies(input.as_bytes(), None) else {
            panic!("{input:?} was accepted")
        };
        assert_eq!(offset, amp);
        let input = "<Response>\n<Message>ää</Mesage>\n</Response>";
        let Err(TwimlError::Malformed { offset, .. }) = parse_replies(input.as_bytes(), None) else {
            panic!("{input:?} was accepted")
        };
        assert_eq!(offset, input.find("</Mesage>").unwrap());
    }

    #[test]
    fn a_surrogate_character_reference_becomes_a_replacement_character() {
        // roxmltree's choice (the old reader refused it): the reply still goes out, with U+FFFD.
        assert_eq!(
            parse_replies(b"<Response><Message>a&#xD800;b</Message></Response>", None),
            Ok(vec![reply(None, "a\u{fffd}b")])
        );
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
        assert_eq!(e.to_string(), "malformed TwiML at byte 21: </Response> found while <Message> is still open");
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
