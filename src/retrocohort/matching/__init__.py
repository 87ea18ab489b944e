"""retrocohort.matching"""
