"""Knowledge bases still on the old keyword weight (1.0, made for rank fusion) move to 0.1, the
weight of the score fusion measured in docs/benchmarks.md."""

from django.db import migrations


def forwards(apps, schema_editor):
    KnowledgeBase = apps.get_model("knowledge", "KnowledgeBase")
    KnowledgeBase.objects.filter(keyword_weight=1.0).update(keyword_weight=0.1)


class Migration(migrations.Migration):
    dependencies = [("knowledge", "0003_keyword_weight_default")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
