"""Chinese "you are a pig" insults, which the classifier scores just under its threshold (你是猪吗:
0.39) while "蠢猪" and "猪脑子" are already blocked; "猪肉" and "小猪佩奇" hold none of these."""

from django.db import migrations

# (term, language, category, action)
TERMS = [
    ("你是猪", "zh", "insult", "block"),
    ("你是头猪", "zh", "insult", "block"),
    ("你这头猪", "zh", "insult", "block"),
]


def add_terms(apps, schema_editor):
    ModerationTerm = apps.get_model("safety", "ModerationTerm")
    for term, language, category, action in TERMS:
        ModerationTerm.objects.get_or_create(
            term=term, language=language, defaults={"category": category, "action": action}
        )


def remove_terms(apps, schema_editor):
    ModerationTerm = apps.get_model("safety", "ModerationTerm")
    for term, language, _category, _action in TERMS:
        ModerationTerm.objects.filter(term=term, language=language).delete()


class Migration(migrations.Migration):
    dependencies = [("safety", "0002_default_terms")]

    operations = [migrations.RunPython(add_terms, remove_terms)]
