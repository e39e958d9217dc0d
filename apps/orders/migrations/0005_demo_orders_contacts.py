"""The demo orders made before orders had contact numbers and store accounts get theirs, once.

`load_demo` used to fill them at every start, which put back what a data-subject erasure had
emptied. A migration runs once per database; orders made since come with both.
"""

from django.db import migrations

# The demo store's order numbers and how their values are made (as `apps.orders.services` makes
# them; a migration keeps its own copy, since the code may change after it).
DEMO_NUMBERS = (
    "LM2026112001",
    "LM2026112002",
    "LM2026111503",
    "LM2026111804",
    "LM2026112205",
    "LM2026101506",
    "LM2026111007",
)


def demo_contacts_fill(apps, schema_editor):
    Order = apps.get_model("orders", "Order")
    for number in DEMO_NUMBERS:
        Order.objects.filter(number=number, contact_phone="").update(
            contact_phone=f"138000080{number[-2:]}"
        )
        Order.objects.filter(number=number, customer_ref="").update(
            customer_ref="demo-user-1" if int(number[-1]) % 2 else "demo-user-2"
        )


class Migration(migrations.Migration):
    dependencies = [("orders", "0004_order_customer_ref")]

    operations = [migrations.RunPython(demo_contacts_fill, migrations.RunPython.noop)]
