//! WhatsApp takes at most 4096 characters of text per message: longer replies are split where
//! a reader would pause.

/// `text.body`'s limit, in characters.
pub const MAX_TEXT_CHARS: usize = 4096;

/// Splits `text` into parts of at most `max_chars` characters, in order: at the last paragraph
/// or sentence end of each part when one falls in its second half, else at the last space,
/// and only inside a word when a "word" is longer than a whole part.
pub fn split_text(text: &str, max_chars: usize) -> Vec<String> {
    assert!(max_chars > 0, "parts need room for one character");
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while let Some((limit, _)) = rest.char_indices().nth(max_chars) {
        let window = &rest[..limit];
        let cut = sentence_end(window, limit / 2)
            .or_else(|| window.rfind(char::is_whitespace).filter(|&i| i > 0))
            .unwrap_or(limit);
        parts.push(rest[..cut].trim_end().to_owned());
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() {
        parts.push(rest.to_owned());
    }
    parts
}

/// The byte index just after the last sentence end (`.`, `!`, `?`, `…` before whitespace, or a
/// line break) that lies at or after `from`.
fn sentence_end(window: &str, from: usize) -> Option<usize> {
    let mut next_is_space = false;
    for (i, c) in window.char_indices().rev() {
        if i < from {
            return None;
        }
        if c == '\n' || (next_is_space && matches!(c, '.' | '!' | '?' | '…')) {
            return Some(i + c.len_utf8());
        }
        next_is_space = c.is_whitespace();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_text_is_one_part() {
        assert_eq!(
            split_text("  Hola, ¿cómo estás?  ", MAX_TEXT_CHARS),
            vec!["Hola, ¿cómo estás?"]
        );
        assert!(split_text("   ", MAX_TEXT_CHARS).is_empty());
    }

    #[test]
    fn a_ten_thousand_character_reply_arrives_in_order_without_a_cut_word() {
        let sentence =
            "Gracias por escribirnos, Ana. Tu póliza cubre daños a terceros y robo total. ";
        let reply: String = sentence.repeat(10_000 / sentence.chars().count() + 1);
        let reply = reply.trim();
        assert!(reply.chars().count() > 10_000);

        let parts = split_text(reply, MAX_TEXT_CHARS);
        assert!(parts.len() >= 3);
        for part in &parts {
            assert!(part.chars().count() <= MAX_TEXT_CHARS);
            assert!(
                part.ends_with('.'),
                "cut at a sentence end: …{}",
                &part[part.len() - 20..]
            );
        }
        assert_eq!(parts.join(" "), reply, "nothing lost, reordered or cut");
    }

    #[test]
    fn without_sentence_ends_it_cuts_between_words_and_inside_a_word_only_when_it_must() {
        let words = "palabra ".repeat(20);
        let parts = split_text(&words, 30);
        assert!(
            parts
                .iter()
                .all(|p| p.chars().count() <= 30 && p.split(' ').all(|w| w == "palabra"))
        );

        let one_word = "x".repeat(25);
        assert_eq!(
            split_text(&one_word, 10),
            vec!["x".repeat(10), "x".repeat(10), "x".repeat(5)]
        );
    }

    #[test]
    fn characters_not_bytes_are_counted() {
        let emoji = "😀".repeat(12);
        let parts = split_text(&emoji, 5);
        assert_eq!(
            parts.iter().map(|p| p.chars().count()).collect::<Vec<_>>(),
            vec![5, 5, 2]
        );
    }

    proptest! {
        #[test]
        fn parts_fit_and_keep_every_word_in_order(text in "[a-zñé .!?\n]{0,400}", max in 5usize..60) {
            let parts = split_text(&text, max);
            for part in &parts {
                prop_assert!(part.chars().count() <= max);
                prop_assert!(!part.is_empty());
            }
            let words = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>().concat();
            prop_assert_eq!(words(&parts.join(" ")), words(&text));
        }
    }
}
