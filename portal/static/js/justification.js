// A justification counted as the gateway counts it (gateway/justification.py): invisible
// characters removed, NFKC, whitespace collapsed; letters are Unicode letters, words are
// whitespace-separated tokens holding a letter, and each different word counts once, with its
// letters ("urgent urgent urgent urgent" is one word of 6 letters). The rule itself comes from the
// policy data (/portal/config.json); the policy still decides.

// Whitespace as Python's str.isspace() has it. JavaScript's \s is not the same set: it holds
// U+FEFF, which the gateway removes as invisible (so "ur\uFEFFgent" is one word there), and
// leaves out U+001C-U+001F and U+0085, which the gateway reads as spaces.
const SPACE = "\\t-\\r\\x1C-\\x20\\x85\\xA0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000";
const SPACES = new RegExp(`[${SPACE}]+`, "u");
// Whitespace stays (as a space); every other invisible character goes, lone surrogates too.
const INVISIBLE = new RegExp(
  `(?![${SPACE}])[\\p{Cf}\\p{Cc}\\p{Cs}\\u034F\\u115F\\u1160\\u17B4\\u17B5\\u180B-\\u180F\\u3164` +
    "\\uFE00-\\uFE0F\\u2065\\uFFA0\\uFFF0-\\uFFF8\\u{E0000}-\\u{E0FFF}]",
  "gu",
);
const LETTER = /\p{L}/gu;
const NOT_LETTER_OR_DIGIT = /[^\p{L}\p{N}]/gu;

export function count(text) {
  const visible = text.replace(INVISIBLE, "").normalize("NFKC").replace(INVISIBLE, "");
  const words = new Map(); // each different word, with its letters
  for (const token of visible.split(SPACES)) {
    const letters = (token.match(LETTER) || []).length;
    const key = wordKey(token);
    if (letters && !words.has(key)) words.set(key, letters);
  }
  let letters = 0;
  for (const n of words.values()) letters += n;
  return { letters, words: words.size };
}

// What makes a word the same word again (gateway/justification.py's _word_key): its letters and
// digits, case folded, so "Urgent!" is "urgent" again.
function wordKey(token) {
  return Array.from(token, caseFold).join("").replace(NOT_LETTER_OR_DIGIT, "");
}

// Python's str.casefold(), one character at a time (so a final sigma is no other letter than σ):
// lower, upper and lower case again takes "ẞ" and "ß" to "ss" as the gateway does. Only the
// dotless ı, which upper case would make an I, is left as the gateway leaves it.
function caseFold(char) {
  return char === "ı" ? char : char.toLowerCase().toUpperCase().toLowerCase();
}

export function meets(rule, text) {
  if (!rule || !rule.justificationRequired) return true;
  const { letters, words } = count(text);
  return words >= rule.minWords && letters >= rule.minLetters;
}

function plural(n, noun) {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

// The rule in words, and how far what has been written meets it.
export function ruleWords(rule, text) {
  if (!rule || !rule.justificationRequired) {
    return "No justification is needed for this purpose. Anything you write is kept in the audit record.";
  }
  const { letters, words } = count(text);
  const need = `A justification is needed: at least ${plural(rule.minWords, "word")} and ` +
    `${plural(rule.minLetters, "letter")}.`;
  if (words >= rule.minWords && letters >= rule.minLetters) return `${need} Yours meets it.`;
  return `${need} So far: ${plural(words, "word")}, ${plural(letters, "letter")}.`;
}
