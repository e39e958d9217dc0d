"""A short starting lexicon: unambiguous insults, slurs and threats in Chinese and English.
Staff extend or switch off terms in the admin (Moderation terms); the classifier covers what a
list cannot."""

from django.db import migrations

# (term, language, category, action)
DEFAULT_TERMS = [
    ("傻逼", "zh", "insult", "block"),
    ("煞笔", "zh", "insult", "block"),
    ("操你妈", "zh", "insult", "block"),
    ("草泥马", "zh", "insult", "block"),
    ("你妈逼", "zh", "insult", "block"),
    ("狗日的", "zh", "insult", "block"),
    ("贱人", "zh", "insult", "block"),
    ("婊子", "zh", "insult", "block"),
    ("杂种", "zh", "insult", "block"),
    ("去死吧", "zh", "threat", "block"),
    ("弄死你", "zh", "threat", "block"),
    ("杀了你", "zh", "threat", "block"),
    ("黑鬼", "zh", "hate", "block"),
    ("脑残", "zh", "insult", "flag"),
    ("白痴", "zh", "insult", "flag"),
    ("弱智", "zh", "insult", "flag"),
    ("fuck you", "en", "insult", "block"),
    ("motherfucker", "en", "insult", "block"),
    ("cunt", "en", "insult", "block"),
    ("bitch", "en", "insult", "block"),
    ("asshole", "en", "insult", "block"),
    ("nigger", "en", "hate", "block"),
    ("faggot", "en", "hate", "block"),
    ("retard", "en", "hate", "block"),
    ("kill yourself", "en", "threat", "block"),
    ("i will kill you", "en", "threat", "block"),
    ("idiot", "en", "insult", "flag"),
    ("moron", "en", "insult", "flag"),
]


def add_terms(apps, schema_editor):
    ModerationTerm = apps.get_model("safety", "ModerationTerm")
    for term, language, category, action in DEFAULT_TERMS:
        ModerationTerm.objects.get_or_create(
            term=term, language=language, defaults={"category": category, "action": action}
        )


def remove_terms(apps, schema_editor):
    ModerationTerm = apps.get_model("safety", "ModerationTerm")
    for term, language, _category, _action in DEFAULT_TERMS:
        ModerationTerm.objects.filter(term=term, language=language).delete()


class Migration(migrations.Migration):
    dependencies = [("safety", "0001_initial")]

    operations = [migrations.RunPython(add_terms, remove_terms)]
