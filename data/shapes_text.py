"""Hand-written statement templates for the shapes benchmark in en, de, fr, es and ru.

A statement is a tuple: ``("present", colour, shape)``, ``("relation", (c1, s1), rel, (c2, s2))`` with rel in
left/right/above/below, or ``("count", shape, n)`` with n in 0..3. Colour and shape keys are the English words.
Phrasing sidesteps grammar where it is awkward (``"Anzahl der Kreise: zwei"``, ``"количество кругов: два"``).
"""

from __future__ import annotations

LANGUAGES = ("en", "de", "fr", "es", "ru")
COLOURS = ("red", "green", "blue", "yellow", "white")
SHAPES = ("circle", "square", "triangle", "cross")

# Per language: shape -> (gender, singular, plural / genitive plural[, genitive singular for ru]).
_NOUNS = {
    "en": {s: ("", s, s + ("es" if s == "cross" else "s")) for s in SHAPES},
    "de": {
        "circle": ("m", "Kreis", "Kreise"),
        "square": ("n", "Quadrat", "Quadrate"),
        "triangle": ("n", "Dreieck", "Dreiecke"),
        "cross": ("n", "Kreuz", "Kreuze"),
    },
    "fr": {
        "circle": ("m", "cercle", "cercles"),
        "square": ("m", "carré", "carrés"),
        "triangle": ("m", "triangle", "triangles"),
        "cross": ("f", "croix", "croix"),
    },
    "es": {
        "circle": ("m", "círculo", "círculos"),
        "square": ("m", "cuadrado", "cuadrados"),
        "triangle": ("m", "triángulo", "triángulos"),
        "cross": ("f", "cruz", "cruces"),
    },
    "ru": {  # all masculine: (gender, nominative, genitive plural, genitive singular)
        "circle": ("m", "круг", "кругов", "круга"),
        "square": ("m", "квадрат", "квадратов", "квадрата"),
        "triangle": ("m", "треугольник", "треугольников", "треугольника"),
        "cross": ("m", "крест", "крестов", "креста"),
    },
}
# Per language: colour -> forms (de: stem; fr/es: (masculine, feminine); ru: (nominative, genitive) masculine).
_ADJ = {
    "en": {c: c for c in COLOURS},
    "de": {"red": "rot", "green": "grün", "blue": "blau", "yellow": "gelb", "white": "weiß"},
    "fr": {
        "red": ("rouge", "rouge"),
        "green": ("vert", "verte"),
        "blue": ("bleu", "bleue"),
        "yellow": ("jaune", "jaune"),
        "white": ("blanc", "blanche"),
    },
    "es": {
        "red": ("rojo", "roja"),
        "green": ("verde", "verde"),
        "blue": ("azul", "azul"),
        "yellow": ("amarillo", "amarilla"),
        "white": ("blanco", "blanca"),
    },
    "ru": {
        "red": ("красный", "красного"),
        "green": ("зелёный", "зелёного"),
        "blue": ("синий", "синего"),
        "yellow": ("жёлтый", "жёлтого"),
        "white": ("белый", "белого"),
    },
}
_NUMBERS = {
    "en": ("no", "one", "two", "three"),
    "de": ("null", "eins", "zwei", "drei"),
    "fr": ("zéro", "un", "deux", "trois"),
    "es": ("cero", "uno", "dos", "tres"),
    "ru": ("ноль", "один", "два", "три"),
}
_REL = {
    "en": {"left": "left of", "right": "right of", "above": "above", "below": "below"},
    "de": {"left": "links vom", "right": "rechts vom", "above": "über dem", "below": "unter dem"},
    "fr": {"left": "à gauche", "right": "à droite", "above": "au-dessus", "below": "au-dessous"},
    "es": {"left": "a la izquierda", "right": "a la derecha", "above": "encima", "below": "debajo"},
    "ru": {"left": "слева от", "right": "справа от", "above": "выше", "below": "ниже"},
}


def _romance(lang: str, colour: str, shape: str) -> tuple[str, str]:
    gender, noun, _ = _NOUNS[lang][shape]
    return gender, f"{noun} {_ADJ[lang][colour][gender == 'f']}"


def _present(lang: str, c: str, s: str) -> str:
    if lang == "en":
        return f"there is a {c} {s}"
    if lang == "de":
        gender, noun, _ = _NOUNS["de"][s]
        return f"auf dem Bild: {_ADJ['de'][c]}{'er' if gender == 'm' else 'es'} {noun}"
    if lang in ("fr", "es"):
        gender, phrase = _romance(lang, c, s)
        verb, art = ("il y a", {"m": "un", "f": "une"}) if lang == "fr" else ("hay", {"m": "un", "f": "una"})
        return f"{verb} {art[gender]} {phrase}"
    return f"на картинке есть {_ADJ['ru'][c][0]} {_NOUNS['ru'][s][1]}"


def _relation(lang: str, a: tuple[str, str], rel: str, b: tuple[str, str]) -> str:
    r = _REL[lang][rel]
    if lang == "en":
        return f"the {a[0]} {a[1]} is {r} the {b[0]} {b[1]}"
    if lang == "de":
        ga, na, _ = _NOUNS["de"][a[1]]
        art, nb = "der" if ga == "m" else "das", _NOUNS["de"][b[1]][1]
        return f"{art} {_ADJ['de'][a[0]]}e {na} ist {r} {_ADJ['de'][b[0]]}en {nb}"
    if lang == "fr":
        ga, pa = _romance("fr", *a)
        gb, pb = _romance("fr", *b)
        return f"{'le' if ga == 'm' else 'la'} {pa} est {r} {'du' if gb == 'm' else 'de la'} {pb}"
    if lang == "es":
        ga, pa = _romance("es", *a)
        gb, pb = _romance("es", *b)
        return f"{'el' if ga == 'm' else 'la'} {pa} está {r} {'del' if gb == 'm' else 'de la'} {pb}"
    return f"{_ADJ['ru'][a[0]][0]} {_NOUNS['ru'][a[1]][1]} находится {r} {_ADJ['ru'][b[0]][1]} {_NOUNS['ru'][b[1]][3]}"


def _count(lang: str, s: str, n: int) -> str:
    num = _NUMBERS[lang][n]
    if lang == "en":
        noun = _NOUNS["en"][s][1 if n == 1 else 2]
        return f"there {'is' if n == 1 else 'are'} {num} {noun}"
    head = {"de": "Anzahl der", "fr": "nombre de", "es": "número de", "ru": "количество"}[lang]
    return f"{head} {_NOUNS[lang][s][2]}{' :' if lang == 'fr' else ':'} {num}"


def render(statement: tuple, lang: str) -> str:
    """The statement as a sentence in ``lang``."""
    kind = statement[0]
    if kind == "present":
        return _present(lang, statement[1], statement[2])
    if kind == "relation":
        return _relation(lang, statement[1], statement[2], statement[3])
    if kind == "count":
        return _count(lang, statement[1], statement[2])
    raise ValueError(f"unknown statement kind {kind!r}")


def vocabulary_lines(lang: str) -> list[str]:
    """Every word form the templates can produce in ``lang`` (so the tokenizer knows them at any dataset size)."""
    lines = [render(("present", c, s), lang) for c in COLOURS for s in SHAPES]
    lines += [render(("count", s, n), lang) for s in SHAPES for n in range(4)]
    lines += [render(("relation", (c, s), r, (c, s)), lang) for c in COLOURS for s in SHAPES for r in _REL[lang]]
    return lines
