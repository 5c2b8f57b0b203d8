"""Case money (案款): each case's sub-account at the court's bank, the bank's statement read into the
double-entry journal, unidentified money (不明款) for a person, and the daily reconciliation.

The rules (the journal's accounts, the split, the comparison) are `models.money`; here they meet the case
book and the court's bank (`connectors.court_bank.CourtBankPort`).
"""
