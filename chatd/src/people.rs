//! Who the people of a room are, as a chat shows them: a name instead of a bare address, and a
//! plain word for what they are to the others.
//!
//! A name comes from, in this order: the display name the mail gave the address
//! (`"Ana Lima" <ana@example.com>`, kept by the milter) or the mall's name for it (kept when the
//! mall opened the room); the mall's shop host ("Lena from Tea House"); the mall's member with a
//! confirmed address. An address with none of these is shown as itself. The word "shop" marks
//! an address that is a shop's host in the mall: a fact of the store, never of the mail, so a
//! mail cannot make itself look like a shop.

use std::collections::HashMap;

use chmail::store::Room;
use tracing::warn;

use crate::state::AppState;

/// Most addresses of a room looked up in the mall's tables when the room is joined: a chat of
/// two or a few needs each name; a mail to a whole list shows the rest by the names the mail
/// gave them (or their addresses) rather than costing a query per address on every join.
pub const MAX_LOOKUPS: usize = 8;

/// What the chat shows for one address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Person {
    /// The name to show, when one is known.
    pub name: Option<String>,
    /// `Some("shop")` for a shop's host in the mall.
    pub badge: Option<&'static str>,
}

/// The people of `room` by address. A failing look-up only costs a name (logged): the chat
/// still opens.
pub async fn of_room(state: &AppState, room: &Room) -> HashMap<String, Person> {
    let mut people: HashMap<String, Person> = HashMap::new();
    for p in &room.participants {
        let person = people.entry(p.address.clone()).or_default();
        if person.name.is_none() {
            person.name.clone_from(&p.name);
        }
    }
    let mut addresses: Vec<String> = room
        .participants
        .iter()
        .map(|p| p.address.clone())
        .collect();
    addresses.dedup();
    for address in addresses.into_iter().take(MAX_LOOKUPS) {
        let (name, badge) = match mall_name(state, &address).await {
            Ok(found) => found,
            Err(e) => {
                warn!(cause = %e, "no mall name for a participant");
                continue;
            }
        };
        let person = people.entry(address).or_default();
        person.badge = badge;
        // The mall's name of a shop beats what a mail called it; a member's only fills a gap.
        if badge.is_some() || person.name.is_none() {
            if let Some(name) = name {
                person.name = Some(name);
            }
        }
    }
    people
}

/// The mall's name for `address`: its shop host's ("Lena from Tea House", with the badge
/// "shop"), else its confirmed member's.
async fn mall_name(
    state: &AppState,
    address: &str,
) -> Result<(Option<String>, Option<&'static str>), crate::error::AppError> {
    if let Some(host) = state.store_call(state.store.host(address)).await? {
        let company = state
            .store_call(state.store.company(host.company_id))
            .await?
            .map(|c| c.name);
        return Ok((
            Some(shop_name(&host.name, company.as_deref())),
            Some("shop"),
        ));
    }
    let member = state
        .store_call(state.store.member_by_address(address))
        .await?;
    Ok((
        member
            .filter(|m| m.confirmed_ms.is_some() && !m.name.trim().is_empty())
            .map(|m| m.name.trim().to_owned()),
        None,
    ))
}

/// "Lena from Tea House"; the company alone when the host has no name, the host alone when the
/// company is gone.
pub fn shop_name(host: &str, company: Option<&str>) -> String {
    match (host.trim(), company.map(str::trim)) {
        ("", Some(company)) => company.to_owned(),
        (host, Some(company)) if !company.is_empty() => format!("{host} from {company}"),
        (host, _) => host.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shop_is_named_by_its_host_and_company() {
        assert_eq!(shop_name("Lena", Some("Tea House")), "Lena from Tea House");
        assert_eq!(shop_name(" ", Some("Tea House")), "Tea House");
        assert_eq!(shop_name("Lena", None), "Lena");
        assert_eq!(shop_name("Lena", Some("")), "Lena");
    }
}
