from django.db import migrations, models


class Migration(migrations.Migration):
    # Policies published before this migration keep what they did: they allowed a release evaluated on its
    # run's training data (with a warning since this change), so False for existing rows as for new ones.
    dependencies = [
        ("governance", "0007_review_label_visibility"),
    ]

    operations = [
        migrations.AddField(
            model_name="thresholdpolicy",
            name="forbid_training_data_overlap",
            field=models.BooleanField(
                default=False,
                help_text="Refuse a release whose evaluation suite shares examples with the suite version its "
                "compression run trained or calibrated on (otherwise the release carries a warning).",
            ),
        ),
    ]
