//! `application/x-www-form-urlencoded` bodies, read strictly: a field that does not decode to
//! UTF-8 makes the whole form unreadable (400) instead of being patched with U+FFFD, so what a
//! handler compares is exactly what was sent.

use hyper::HeaderMap;
use hyper::header::CONTENT_TYPE;

/// A decoded form: the fields in order; the first of a repeated name wins.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Form(Vec<(String, String)>);

/// Why a form cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("the form is not UTF-8 text")]
    NotUtf8,
}

impl Form {
    pub fn parse(body: &[u8]) -> Result<Form, FormError> {
        let mut fields = Vec::new();
        for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
            let (name, value) = match pair.iter().position(|b| *b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &[][..]),
            };
            fields.push((decode(name)?, decode(value)?));
        }
        Ok(Form(fields))
    }

    /// Every field in order (repeated names included).
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

fn decode(part: &[u8]) -> Result<String, FormError> {
    let plus_as_space: Vec<u8> = part.iter().map(|b| if *b == b'+' { b' ' } else { *b }).collect();
    let bytes: Vec<u8> = percent_encoding::percent_decode(&plus_as_space).collect();
    String::from_utf8(bytes).map_err(|_| FormError::NotUtf8)
}

/// Whether the request says its body is a URL-encoded form.
pub fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_decoded_strictly() {
        let f = Form::parse(b"username=anna&password=a+b%26c%3D&username=other&empty=&bare").unwrap();
        assert_eq!(f.get("username"), Some("anna"), "the first wins");
        assert_eq!(f.get("password"), Some("a b&c="));
        assert_eq!(f.get("empty"), Some(""));
        assert_eq!(f.get("bare"), Some(""));
        assert_eq!(f.get("missing"), None);
        assert_eq!(Form::parse(b"").unwrap(), Form::default());
        assert_eq!(Form::parse(b"a=%C3%A4").unwrap().get("a"), Some("ä"));
        assert_eq!(Form::parse(b"username=%FF%FE"), Err(FormError::NotUtf8));
        assert_eq!(Form::parse(b"username=\xff"), Err(FormError::NotUtf8));
        assert_eq!(Form::parse(b"a=%zz").unwrap().get("a"), Some("%zz"), "a stray % is kept");
    }

    #[test]
    fn only_url_encoded_bodies_are_forms() {
        let mut h = HeaderMap::new();
        assert!(!is_form(&h));
        h.insert(CONTENT_TYPE, "application/x-www-form-urlencoded; charset=UTF-8".parse().unwrap());
        assert!(is_form(&h));
        h.insert(CONTENT_TYPE, "multipart/form-data; boundary=x".parse().unwrap());
        assert!(!is_form(&h));
    }
}
