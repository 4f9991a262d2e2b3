"""The one way user-supplied text is shown: titles, artists, years, class names, file and zip entry names.

Every view that puts such text into Markdown, HTML or a toast passes it through `escape_user_text`,
so a title like `<form>…` or `![](http://tracker)` shows as the characters typed, never as an element.
"""

import re

# Bidi controls reorder what follows them: "abc\u202egpj.exe" would show as "abcexe.jpg".
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_DROPPED = re.compile(f"[{BIDI_CONTROLS}\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_WHITESPACE = re.compile(r"\s+")
_DOLLARS = re.compile(r"\$(?=\$)")
# What Markdown or HTML would read as syntax: tags and entities, links and images, emphasis, code,
# tables, LaTeX, e-mail autolinks; the ":" of "http://" and the "." of "www." (autolinks); a list
# or heading marker at the start (the text may follow "- " in a list).
_SYNTAX = re.compile(r"""[\\`*_{}\[\]<>#+!|~&$@]|:(?=//)|(?<=www)\.|^-|(?<=^\d)[.)]|(?<=^\d\d)[.)]""",
                     re.IGNORECASE)


def escape_user_text(value, markup: bool = True) -> str:
    """`value` as one line of inert text: bidi and control characters dropped, whitespace collapsed.

    markup=True, for gr.Markdown, HTML and toasts (gr.Error and gr.Info render HTML): each character
    that could be read as syntax becomes a numeric character reference, which CommonMark and HTML both
    show as the character itself. Letters, digits, spaces and ordinary punctuation (. , : ' " - / ( ))
    stay as they are, so messages still read well through the API.
    markup=False, for what Gradio shows as plain text (gallery captions, labels, tables).
    """
    text = _WHITESPACE.sub(" ", _DROPPED.sub("", "" if value is None else str(value))).strip()
    if not markup:
        return text
    # Gradio's LaTeX pass reads the rendered page text, where a reference is a "$" again: split each $$.
    text = _DOLLARS.sub("$\u200b", text)
    return _SYNTAX.sub(lambda m: f"&#{ord(m.group())};", text)
