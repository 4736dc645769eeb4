//! A client (pet owner) and their phone numbers, for the side panel: `GET client/<id>/`,
//! `GET phonenumber/?client__is=<id>` (paged), and `GET patient/<id>/` for its owner.
//!
//! Shapes (shared/PROTOCOLS.md §1, a third-party client's fixtures): a client has `id`,
//! `firstname`, `lastname`, `organization_name`, `no_sms`, `phone_numbers`; a phone number
//! `{id, url, client, type_code, phone_number, description, preferred_reminders}`. The patient's
//! `client` is assumed to be the owner's URL (or id), as on reminders. Numbers are fetched
//! through the `phonenumber` list filtered by client, because the client's own
//! `phone_numbers` list may hold URLs rather than objects.

use serde_json::Value;

use super::{ProvetClient, ProvetError};

/// Most numbers one client shows (a real client has a few).
pub const MAX_NUMBERS: usize = 20;

/// What the panel shows of a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCard {
    pub id: i64,
    pub name: String,
    /// Provet's "no SMS" flag on the client.
    pub no_sms: bool,
    /// Preferred first.
    pub numbers: Vec<ClientNumber>,
}

/// One of the client's numbers, as Provet has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientNumber {
    pub phone_number: String,
    pub description: String,
    pub preferred: bool,
}

impl ProvetClient {
    /// The client `id` with their numbers (preferred first).
    pub async fn client_card(&self, id: i64) -> Result<ClientCard, ProvetError> {
        let what = format!("client {id}");
        let value = self.get_json(&format!("client/{id}/")).await?;
        let mut card = card_from_json(&value, id).map_err(|e| ProvetError::BadResponse(format!("{what}: {e}")))?;
        card.numbers = self.client_phone_numbers(id).await?;
        Ok(card)
    }

    /// Client `id`'s phone numbers, `preferred_reminders` first, empty ones and another client's
    /// left out (the side panel; a reminder with no number of its own takes the first).
    pub async fn client_phone_numbers(&self, id: i64) -> Result<Vec<ClientNumber>, ProvetError> {
        let items = self.list_all(&format!("phonenumber/?client__is={id}"), "phone numbers").await?;
        Ok(numbers_from_items(&items, id))
    }

    /// The owner (client id) of patient `id`.
    pub async fn patient_owner(&self, id: i64) -> Result<i64, ProvetError> {
        let value = self.get_json(&format!("patient/{id}/")).await?;
        id_of(value.get("client"))
            .ok_or_else(|| ProvetError::BadResponse(format!("patient {id}: no owner (`client`) in the answer")))
    }
}

fn text(value: &Value, key: &str) -> String {
    value.get(key).and_then(Value::as_str).unwrap_or("").trim().chars().take(200).collect()
}

fn card_from_json(value: &Value, id: i64) -> Result<ClientCard, String> {
    if id_of(value.get("id")).or_else(|| id_of(value.get("url"))) != Some(id) {
        return Err("the answer is for another client".into());
    }
    let person = format!("{} {}", text(value, "firstname"), text(value, "lastname")).trim().to_string();
    let name = if person.is_empty() { text(value, "organization_name") } else { person };
    let no_sms = value.get("no_sms").and_then(Value::as_bool).unwrap_or(false);
    Ok(ClientCard { id, name, no_sms, numbers: Vec::new() })
}

/// The numbers of `client` among listed items (an item of another client is skipped: a
/// filter Provet ignored must not show someone else's number).
fn numbers_from_items(items: &[Value], client: i64) -> Vec<ClientNumber> {
    let mut numbers: Vec<ClientNumber> = items
        .iter()
        .filter(|item| id_of(item.get("client")) == Some(client))
        .filter_map(|item| {
            let phone_number = text(item, "phone_number");
            (!phone_number.is_empty()).then(|| ClientNumber {
                phone_number,
                description: text(item, "description"),
                preferred: item.get("preferred_reminders").and_then(Value::as_bool).unwrap_or(false),
            })
        })
        .take(MAX_NUMBERS)
        .collect();
    numbers.sort_by_key(|n| !n.preferred);
    numbers
}

/// An id given as a number, a digit string, or a URL whose last path segment is the id.
fn id_of(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n.as_i64().filter(|n| *n > 0),
        Value::String(s) => {
            let last = s.trim_end_matches('/').rsplit('/').next()?;
            last.parse::<i64>().ok().filter(|n| *n > 0)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_client_and_their_numbers_are_read_preferred_first_and_strangers_skipped() {
        let card =
            card_from_json(&json!({"id": 7, "firstname": "Anna", "lastname": "Virtanen", "no_sms": false}), 7).unwrap();
        assert_eq!(card.name, "Anna Virtanen");
        assert!(card_from_json(&json!({"id": 8}), 7).is_err());
        let org =
            card_from_json(&json!({"url": "https://x/api/0.1/client/7/", "organization_name": "Farm Oy"}), 7).unwrap();
        assert_eq!(org.name, "Farm Oy");
        let items = vec![
            json!({"client": "https://x/api/0.1/client/7/", "phone_number": "+358401111111", "description": "work", "preferred_reminders": false}),
            json!({"client": 7, "phone_number": "+358402222222", "description": "mobile", "preferred_reminders": true}),
            json!({"client": 9, "phone_number": "+358403333333"}),
            json!({"client": 7, "phone_number": null}),
        ];
        let numbers = numbers_from_items(&items, 7);
        assert_eq!(
            numbers.iter().map(|n| n.phone_number.as_str()).collect::<Vec<_>>(),
            ["+358402222222", "+358401111111"]
        );
    }

    #[test]
    fn ids_come_from_numbers_strings_and_urls() {
        assert_eq!(id_of(Some(&json!(5))), Some(5));
        assert_eq!(id_of(Some(&json!("https://x/api/0.1/client/12/"))), Some(12));
        assert_eq!(id_of(Some(&json!("-3"))), None);
        assert_eq!(id_of(Some(&json!(null))), None);
        assert_eq!(id_of(None), None);
    }
}
