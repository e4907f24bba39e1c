//! Folding a WhatsApp id, a user id or a typed number onto a customer key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::domain::{CountryId, CustomerKey, PhoneNumber};

const COUNTRIES: [CountryId; 4] = [CountryId::MX, CountryId::AR, CountryId::BR, CountryId::US];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(key) = CustomerKey::from_whatsapp_id(&text) {
        let digits = key.as_str();
        assert!((7..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()));
        // Folding a folded key changes nothing; a stored key reads back as itself.
        assert_eq!(CustomerKey::from_whatsapp_id(digits).as_ref(), Ok(&key));
        assert_eq!(CustomerKey::try_from(digits.to_owned()).as_ref(), Ok(&key));
        assert!(key.masked().ends_with(&digits[digits.len() - 4..]));
    }
    if let Ok(key) = CustomerKey::from_whatsapp_user_id(&text) {
        assert_eq!(key.as_str(), text);
        assert_eq!(
            CustomerKey::try_from(text.clone().into_owned()).as_ref(),
            Ok(&key)
        );
        let _ = key.masked();
    }
    for country in COUNTRIES {
        let Ok(phone) = PhoneNumber::parse(&text, country) else {
            continue;
        };
        assert!(phone.as_str().starts_with('+'));
        let key = CustomerKey::from_phone(&phone);
        // Some valid numbers (Austrian and German landlines) are shorter or longer than any
        // WhatsApp id: only the others must key as WhatsApp keys them.
        if (7..=15).contains(&phone.digits().len()) {
            assert_eq!(
                CustomerKey::from_whatsapp_id(phone.digits()).as_ref(),
                Ok(&key)
            );
            assert_eq!(
                CustomerKey::from_whatsapp_id(key.as_str()).as_ref(),
                Ok(&key)
            );
            assert_eq!(
                PhoneNumber::try_from(phone.as_str().to_owned()).as_ref(),
                Ok(&phone)
            );
        }
    }
});
