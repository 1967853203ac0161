"""The contacts' transform: trim and lower-case each email; a row whose email has no `@` is rejected."""

import pandas as pd

from zip_etl.transform import CleaningResult


def clean_contacts(raw: pd.DataFrame) -> CleaningResult:
    email = raw["email_address"].str.strip().str.lower()
    valid = email.str.contains("@", regex=False).to_numpy(dtype=bool, na_value=False)
    cleaned = pd.DataFrame({
        "postcode": raw["postcode"][valid],
        "contact_id": raw["contact_id"][valid],
        "email": email[valid],
        "modified": raw["modified"][valid],
    }).reset_index(drop=True)
    rejected = raw[~valid].assign(reason="invalid_email",
                                  detail="email_address has no @").reset_index(drop=True)
    return CleaningResult(cleaned, rejected)


clean_contacts.rejection_reasons = ("invalid_email",)
