"""The one label vocabulary of ArtLab, shared by the image and text models.

Label ids are the positions in these tuples; every checkpoint card stores its
own copy of the names, and loading checks they match.
"""

STYLES = (
    "art_nouveau",
    "baroque",
    "expressionism",
    "impressionism",
    "post_impressionism",
    "romanticism",
    "symbolism",
)

SUBJECTS = (
    "genre_scene",
    "history_religious",
    "landscape",
    "portrait",
    "still_life",
)

# The heads of each kind of model, in the order of their outputs.
IMAGE_HEADS = {"style": STYLES, "subject": SUBJECTS}
TEXT_HEADS = {"subject": SUBJECTS, "style": STYLES}
CUSTOM_HEAD = "labels"      # a fine-tuned model's own classes: its head in the model and in predict's JSON

# Display names for the UI, in the languages the kiosk offers.
DISPLAY_NAMES = {
    "en": {
        "art_nouveau": "Art Nouveau",
        "baroque": "Baroque",
        "expressionism": "Expressionism",
        "impressionism": "Impressionism",
        "post_impressionism": "Post-Impressionism",
        "romanticism": "Romanticism",
        "symbolism": "Symbolism",
        "genre_scene": "Genre scene",
        "history_religious": "History & religious",
        "landscape": "Landscape",
        "portrait": "Portrait",
        "still_life": "Still life",
    },
    "zh": {
        "art_nouveau": "新艺术运动",
        "baroque": "巴洛克",
        "expressionism": "表现主义",
        "impressionism": "印象派",
        "post_impressionism": "后印象派",
        "romanticism": "浪漫主义",
        "symbolism": "象征主义",
        "genre_scene": "风俗画",
        "history_religious": "历史与宗教画",
        "landscape": "风景画",
        "portrait": "肖像画",
        "still_life": "静物画",
    },
}

HEADS = {"style": STYLES, "subject": SUBJECTS}


def display_name(label: str, lang: str = "en") -> str:
    """Human name of a label; unknown labels (a curator's own classes) show as given."""
    return DISPLAY_NAMES.get(lang, DISPLAY_NAMES["en"]).get(label, label.replace("_", " "))
