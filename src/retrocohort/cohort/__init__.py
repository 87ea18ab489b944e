"""retrocohort.cohort"""
