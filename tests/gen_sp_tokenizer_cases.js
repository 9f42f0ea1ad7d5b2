#!/usr/bin/env node
/* Builds tests/fixtures/phi35v-tiny/tokenizer_cases.json: strings with the ids (no <s>) of Phi-3.5-V's
 * Llama-2 SentencePiece BPE tokenizer as computed by an independent implementation, the npm package
 * @lenml/tokenizers (a fork of transformers.js), on tests/fixtures/phi35v-tiny/tokenizer.json.
 *
 *   mkdir -p /tmp/sptokref && (cd /tmp/sptokref && npm install @lenml/tokenizers)
 *   NODE_PATH=/tmp/sptokref/node_modules node tests/gen_sp_tokenizer_cases.js
 *
 * It first checks the four prompts' chunks of the reference manifest (Hugging Face tokenizers'
 * output, with <s>), then writes hand-picked edge cases and seeded random strings.
 * Where transformers.js differs from Hugging Face tokenizers, strings are left out and tested by hand
 * in tests/test_tokenizer.c: the whitespace an rstrip added token swallows is JavaScript's \s there
 * (it includes U+FEFF and excludes U+0085) but Rust's char::is_whitespace in HF (the opposite), so
 * neither character follows an added token here.
 */
"use strict";
const fs = require("fs");
const path = require("path");
const { TokenizerLoader } = require("@lenml/tokenizers");

const root = path.resolve(__dirname, "..");
const dir = path.join(root, "tests/fixtures/phi35v-tiny");
const tokenizer = TokenizerLoader.fromPreTrained({
  tokenizerJSON: JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8")),
  tokenizerConfig: {},
});
const encode = (t) => tokenizer.encode(t, { add_special_tokens: false });

/* The reference chunks (tests/test_tokenizer.c checks the same with <s>). */
const reference = [
  [" Represent the given image with the following question: What is in the image",
   [1, 29871, 16314, 278, 2183, 1967, 411, 278, 1494, 1139, 29901, 1724, 338, 297, 278, 1967]],
  [" Represent the given image.", [1, 29871, 16314, 278, 2183, 1967, 29889]],
  ["", [1]],
  ["A cat and a dog", [1, 319, 6635, 322, 263, 11203]],
  ["Find me an everyday image that matches the given caption: A cat and a tiger.",
   [1, 10987, 592, 385, 1432, 3250, 1967, 393, 7087, 278, 2183, 5777, 683, 29901, 319, 6635, 322, 263, 260, 4087, 29889]],
];
for (const [text, ids] of reference) {
  const got = tokenizer.encode(text, { add_special_tokens: true });
  if (JSON.stringify(got) !== JSON.stringify(ids)) throw new Error("reference disagrees for " + JSON.stringify(text));
}

/* Deterministic PRNG (mulberry32). */
let seed = 20241008;
function rand() {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (a) => a[Math.floor(rand() * a.length)];

const handPicked = [
  "", " ", "  ", "   ", "a", " a", "a ", " a ", "  leading", "trailing  ", "multiple   spaces  here",
  "\n", "\n\n", "line one\nline two", "tab\there", "\r\n", " \n ", "x\u00a0y", "\u3000full width space",
  "Hello, world!", "don't stop", "1234567890", "3.14159", "e-mail: someone@example.com", "C:\\path\\to\\file",
  "caf\u00e9", "cafe\u0301", "na\u00efve r\u00e9sum\u00e9", "\u00c5ngstr\u00f6m", "stra\u00dfe", "\u0130stanbul",
  "\u4f60\u597d\u4e16\u754c", "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8", "\ud55c\uad6d\uc5b4", "\u0420\u0443\u0441\u0441\u043a\u0438\u0439 \u0442\u0435\u043a\u0441\u0442",
  "\u0627\u0644\u0639\u0631\u0628\u064a\u0629", "\u05e2\u05d1\u05e8\u05d9\u05ea", "\u0939\u093f\u0928\u094d\u0926\u0940", "\u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22",
  "\ud83e\udd80", "emoji \ud83d\ude00\ud83d\ude03 mix", "\ud83d\udc68\u200d\ud83d\udc69\u200d\ud83d\udc67", "flag \ud83c\uddeb\ud83c\uddf7",
  "\u2581", "\u2581\u2581", "a\u2581b", " \u2581 ", "\u2581the", "\u0000", "nul\u0000inside", "\u007f\u0001\u001f",
  "\ufffd", "\u{10ffff}", "\u{1d400}\u{1d401}", "\u{20000}\u{2a6d6}",
  "<s>", "</s>", "<unk>", "<s>text</s>", "a<s>b", "a <s> b", "<|user|>", "<|user|>hello", "<|user|> hello",
  "<|user|>\nhello<|end|>\n<|assistant|>\n", "<|user|>   \t\n  x", "<|end|><|end|>", "x<|end|>y", "x <|end|> y",
  "<|endoftext|> after", "before <|endoftext|>", "<|user", "|>", "<|image_1|> Represent the given image.",
  "<|system|>You are helpful.<|end|>", "<|placeholder1|><|placeholder6|>", "<0x0A>", "<0x41>",
  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  "Thequickbrownfoxjumpsoverthelazydog", "supercalifragilisticexpialidocious",
  "int main(void) {\n    return 0;\n}\n", "def f(x):\n\treturn x ** 2  # square",
  "https://example.com/path?query=1&b=2#frag", "{\"json\": [1, 2, 3]}",
];

/* Random strings from a pool of ASCII, whitespace, letters of several scripts (many in the
 * vocabulary, some not: those fall back to bytes), emoji, "▁" and the added tokens. */
const pool = [
  ..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
  ..." ".repeat(20), "\n", "\n", "\t", "\r", ...".,;:!?'\"()[]{}<>|/\\-_=+*&^%$#@~`",
  "\u00e9", "\u00fc", "\u00f1", "\u00e7", "\u00df", "\u0301", "\u0308", "\u00a0", "\u2003", "\u3000",
  "\u4e00", "\u4e2d", "\u6587", "\u5b57", "\u9f98", "\u3042", "\u30a2", "\uac00", "\ud7a3", "\u0410", "\u044f", "\u03b1", "\u03a9",
  "\u05d0", "\u0627", "\u0915", "\u0e01", "\u1e9e", "\u2581", "\u20ac", "\u2122", "\u221e",
  "\ud83d\ude00", "\ud83e\udd80", "\ud83d\udc4d\ud83c\udffd", "\u{1f1ef}\u{1f1f5}", "\u{2f800}",
  "<s>", "</s>", "<|user|>", "<|end|>", "<|assistant|>", "<|endoftext|>", "<|system|>",
];
const words = ["the", "image", "given", "represent", "cat", "dog", "question", "what", "is", "in", "tiger", "caption"];
const random = [];
for (let i = 0; i < 600; i++) {
  const n = 1 + Math.floor(rand() * 40);
  let s = "";
  for (let k = 0; k < n; k++) s += rand() < 0.3 ? pick(words) : pick(pool);
  random.push(s);
}

const cases = [];
const seen = new Set();
for (const text of [...handPicked, ...random]) {
  if (seen.has(text)) continue;
  seen.add(text);
  cases.push({ text, ids: encode(text) });
}
const out = path.join(dir, "tokenizer_cases.json");
fs.writeFileSync(out, JSON.stringify({
  source: "@lenml/tokenizers on tests/fixtures/phi35v-tiny/tokenizer.json, encode(text, {add_special_tokens: false}); generated by tests/gen_sp_tokenizer_cases.js",
  cases,
}, null, 0).replace(/\},\{/g, "},\n{") + "\n");
console.log(`${cases.length} cases -> ${out}`);
