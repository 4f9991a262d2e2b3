"""Texts that are not titles or descriptions of paintings, made here: what the text "unsure" answer
is measured on (the image analogue is artlab.data.nonpaintings).

A visitor may type anything: placeholder Latin, a cat on the keyboard, a link, a line of code, a
phone number, a chat message, a recipe. `make_nontexts(count, seed)` draws such texts from the
kinds below, in equal shares, so the unsure rate can be reported per kind. The threshold of the
unsure rule is chosen on one seed and measured once on another (benchmarks/text.py --unsure).
"""

import random
import string

KINDS = ("lorem_ipsum", "random_letters", "keyboard_mash", "url", "code", "numbers", "chat",
         "recipe", "email", "log_line", "identifier")

LOREM = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et "
         "dolore magna aliqua enim ad minim veniam quis nostrud exercitation ullamco laboris nisi aliquip ex ea "
         "commodo consequat duis aute irure in reprehenderit voluptate velit esse cillum fugiat nulla pariatur "
         "excepteur sint occaecat cupidatat non proident sunt culpa qui officia deserunt mollit anim id est "
         "laborum").split()
KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm", "1234567890")
DOMAINS = ("example.com", "github.com", "mysite.org", "shop.example.net", "docs.python.org", "t.co", "bit.ly")
PATH_PARTS = ("index", "api", "v2", "users", "login", "search", "item", "cart", "static", "img", "page", "id")
CODE_LINES = ("def {a}({b}):\n    return {b} + {n}", "for (int {b} = 0; {b} < {n}; {b}++) {{ {a}({b}); }}",
              "import {a}\nprint({a}.{b}({n}))", "SELECT {a}, {b} FROM tbl WHERE id = {n};",
              "const {a} = require('{b}');", "if ({a} == null) throw new Error('{b}');",
              "{a} = [{b} for {b} in range({n}) if {b} % 2]", "<div class=\"{a}\">{b}</div>",
              "git commit -m \"fix {a} {b}\"", "{{\"{a}\": {n}, \"{b}\": null}}")
IDENTIFIERS = ("foo", "bar", "tmp", "cfg", "idx", "buf", "ctx", "req", "res", "obj", "val", "np", "df", "x", "y")
CHAT = ("hey are you coming tonight?", "lol ok see you at 8", "can u send me the file pls",
        "omg that's hilarious 😂", "brb, grabbing coffee", "did you get my email about the meeting?",
        "thx! talk tomorrow", "where r u??", "running late, traffic is crazy", "happy bday!!! 🎉",
        "ok cool, let me know when you're free", "idk maybe next week", "sounds good, ttyl",
        "who's bringing snacks", "my phone is dying, call later", "gg wp", "nvm found it")
RECIPE = ("preheat the oven to {n} degrees", "whisk {q} eggs with {q} cups of flour", "add a pinch of salt",
          "simmer for {q} minutes, stirring occasionally", "season with pepper and serve warm",
          "chop {q} onions and fry in butter", "bake until golden, about {q} minutes",
          "mix {q} tbsp sugar, {q} tsp baking soda and the milk", "let the dough rest for {q} hours",
          "drain the pasta and toss with olive oil", "grease a {n} cm tin")
NAMES = ("john.smith", "anna_k", "info", "support", "m.rossi", "dev-team", "noreply", "j.doe42")
LOG_LEVELS = ("INFO", "WARN", "ERROR", "DEBUG")
LOG_EVENTS = ("connection refused", "request took {n} ms", "user {n} logged in", "cache miss for key {a}",
              "retrying in {q}s", "disk usage at {q}%", "timeout after {n} ms", "null pointer in {a}")


def _lorem(rng):
    words = [rng.choice(LOREM) for _ in range(rng.randint(3, 30))]
    text = " ".join(words)
    return text[0].upper() + text[1:] + rng.choice([".", "", "..."])


def _random_letters(rng):
    return " ".join("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 10)))
                    for _ in range(rng.randint(1, 8)))


def _keyboard_mash(rng):
    def run():
        row = rng.choice(KEYBOARD_ROWS)
        start = rng.randrange(len(row) - 2)
        return row[start:start + rng.randint(3, len(row) - start)]
    mash = "".join(run() if rng.random() < 0.6 else rng.choice(string.ascii_lowercase) * rng.randint(2, 6)
                   for _ in range(rng.randint(1, 4)))
    return mash if rng.random() < 0.7 else " ".join(mash[i:i + 5] for i in range(0, len(mash), 5))


def _url(rng):
    path = "/".join(rng.choice(PATH_PARTS) for _ in range(rng.randint(0, 4)))
    query = f"?{rng.choice(PATH_PARTS)}={rng.randint(1, 99999)}" if rng.random() < 0.5 else ""
    return f"{rng.choice(['https://', 'http://', 'www.', ''])}{rng.choice(DOMAINS)}/{path}{query}"


def _fill(rng, template: str) -> str:
    a, b = rng.sample(IDENTIFIERS, 2)
    return template.format(a=a, b=b, n=rng.randint(2, 500), q=rng.randint(1, 12))


def _code(rng):
    return _fill(rng, rng.choice(CODE_LINES))


def _numbers(rng):
    forms = (lambda: f"+{rng.randint(1, 99)} {rng.randint(100, 999)} {rng.randint(1000, 9999)} {rng.randint(100, 9999)}",
             lambda: " ".join(str(rng.randint(0, 10 ** rng.randint(1, 6))) for _ in range(rng.randint(1, 8))),
             lambda: f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{rng.randint(1950, 2030)}",
             lambda: f"{rng.uniform(-1000, 1000):.{rng.randint(0, 4)}f}",
             lambda: f"{rng.randint(1, 99)} + {rng.randint(1, 99)} = {rng.randint(2, 198)}")
    return rng.choice(forms)()


def _chat(rng):
    return " ".join(rng.sample(CHAT, rng.randint(1, 2)))


def _recipe(rng):
    steps = [_fill(rng, s) for s in rng.sample(RECIPE, rng.randint(1, 3))]
    return ". ".join(s[0].upper() + s[1:] for s in steps) + "."


def _email(rng):
    return f"{rng.choice(NAMES)}@{rng.choice(DOMAINS)}"


def _log_line(rng):
    return (f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} {rng.randint(0, 23):02d}:"
            f"{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d} {rng.choice(LOG_LEVELS)} "
            + _fill(rng, rng.choice(LOG_EVENTS)))


def _identifier(rng):
    alphabet = rng.choice([string.hexdigits.lower()[:16], string.ascii_letters + string.digits])
    body = "".join(rng.choice(alphabet) for _ in range(rng.randint(8, 40)))
    return rng.choice(["", "id:", "#", "order ", "sha256 ", "ref-"]) + body


MAKERS = {"lorem_ipsum": _lorem, "random_letters": _random_letters, "keyboard_mash": _keyboard_mash,
          "url": _url, "code": _code, "numbers": _numbers, "chat": _chat, "recipe": _recipe,
          "email": _email, "log_line": _log_line, "identifier": _identifier}


def make_nontexts(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """(kind, text) pairs: `count` texts, the kinds taking turns, reproducible from `seed`."""
    rng = random.Random(seed)
    return [(KINDS[i % len(KINDS)], MAKERS[KINDS[i % len(KINDS)]](rng)) for i in range(count)]
