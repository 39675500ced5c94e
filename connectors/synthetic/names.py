"""Names for synthetic people, embedded so that generation needs no network and never changes under
a seed.

The lists mix names popular in England across the last forty years (children and their parents are
drawn from the same lists) with names common in its larger communities, because a linkage engine
that is only ever tested on "John Smith" learns nothing about the names it will really meet. Every
formal name in the nickname table is also a given name, so a nickname can actually be used.
"""

from __future__ import annotations

from typing import Final

FEMALE_GIVEN: Final = (
    "Olivia", "Amelia", "Isla", "Ava", "Mia", "Ivy", "Lily", "Isabella", "Rosie", "Sophia", "Grace",
    "Freya", "Willow", "Florence", "Emily", "Ella", "Poppy", "Evie", "Elsie", "Charlotte", "Evelyn",
    "Sienna", "Sofia", "Daisy", "Phoebe", "Sophie", "Alice", "Harper", "Matilda", "Ruby", "Emilia",
    "Maya", "Millie", "Isabelle", "Eva", "Luna", "Jessica", "Aria", "Zara", "Maryam", "Aisha",
    "Fatima", "Hafsa", "Amira", "Layla", "Zainab", "Hannah", "Chloe", "Megan", "Lauren", "Amy",
    "Holly", "Ellie", "Lucy", "Abigail", "Rebecca", "Eleanor", "Elizabeth", "Katherine",
    "Catherine", "Victoria", "Alexandra", "Samantha", "Gabriella", "Penelope", "Josephine",
    "Madeleine", "Harriet", "Georgina", "Annabelle", "Natasha", "Jennifer", "Margaret", "Frances",
    "Zofia", "Oliwia", "Amara", "Chidinma", "Priya", "Ananya", "Niamh", "Aoife", "Leah", "Imogen",
)  # fmt: skip

MALE_GIVEN: Final = (
    "Muhammad", "Noah", "Oliver", "George", "Leo", "Arthur", "Oscar", "Theodore", "Freddie",
    "Henry", "Archie", "Alfie", "Charlie", "Jacob", "Thomas", "Finley", "Jack", "Isaac", "Lucas",
    "Teddy", "Harry", "Joshua", "James", "William", "Benjamin", "Samuel", "Daniel", "Matthew",
    "Christopher", "Jonathan", "Nicholas", "Joseph", "Edward", "Charles", "Frederick", "Archibald",
    "Zachary", "Nathaniel", "Robert", "Michael", "Anthony", "Mohammed", "Gabriel", "Sebastian",
    "Maximilian", "Stanley", "Leonardo", "Alexander", "Ethan", "Logan", "Mason", "Dylan", "Riley",
    "Kai", "Reuben", "Elijah", "Hugo", "Louis", "Ibrahim", "Yusuf", "Ayaan", "Omar", "Hamza",
    "Bilal", "Aarav", "Arjun", "Rohan", "Kacper", "Jakub", "Szymon", "Chidi", "Tobi", "Kwame",
    "Liam", "Callum", "Connor", "Kieran", "Rhys", "Owen", "Ryan", "Jamie", "Lewis", "Aiden",
)  # fmt: skip

FAMILY: Final = (
    "Smith", "Jones", "Williams", "Taylor", "Brown", "Davies", "Evans", "Wilson", "Thomas",
    "Johnson", "Roberts", "Robinson", "Thompson", "Wright", "Walker", "White", "Edwards", "Hughes",
    "Green", "Hall", "Lewis", "Harris", "Clarke", "Patel", "Jackson", "Wood", "Turner", "Martin",
    "Cooper", "Hill", "Ward", "Morris", "Moore", "Clark", "Lee", "King", "Baker", "Harrison",
    "Morgan", "Allen", "James", "Scott", "Phillips", "Watson", "Davis", "Parker", "Price",
    "Bennett", "Young", "Griffiths", "Mitchell", "Kelly", "Cook", "Carter", "Richardson", "Bailey",
    "Collins", "Bell", "Shaw", "Murphy", "Miller", "Cox", "Richards", "Khan", "Marshall",
    "Anderson", "Simpson", "Ellis", "Adams", "Singh", "Begum", "Wilkinson", "Foster", "Chapman",
    "Powell", "Webb", "Rogers", "Gray", "Mason", "Ali", "Hunt", "Hussain", "Campbell", "Matthews",
    "Owen", "Palmer", "Holmes", "Mills", "Barnes", "Knight", "Lloyd", "Butler", "Russell", "Barker",
    "Fisher", "Stevens", "Jenkins", "Murray", "Dixon", "Harvey", "Graham", "Pearson", "Ahmed",
    "Fletcher", "Walsh", "Kaur", "Gibson", "Howard", "Andrews", "Stewart", "Elliott", "Reynolds",
    "Saunders", "Payne", "Fox", "Ford", "Pearce", "Day", "Brooks", "West", "Lawrence", "Cole",
    "Atkinson", "Bradley", "Spencer", "Gill", "Dawson", "Ball", "Burton", "O'Brien", "Watts",
    "Rose", "Booth", "Perry", "Ryan", "Grant", "Wells", "Armstrong", "Francis", "Rees", "Hayes",
    "Hart", "Hudson", "Newman", "Barrett", "Webster", "Hunter", "Gregory", "Carr", "Lowe", "Page",
    "Marsh", "Riley", "Dunn", "Woods", "Parsons", "Berry", "Stone", "Reid", "Holland", "Hawkins",
    "Harding", "Porter", "Robertson", "Newton", "Oliver", "Reed", "Kennedy", "Williamson", "Bird",
    "Gardner", "Shah", "Dean", "Lane", "Cooke", "Bates", "Henderson", "Parry", "Burgess", "Bishop",
    "Walton", "Burns", "Nicholson", "Shepherd", "Ross", "Cross", "Long", "Freeman", "Warren",
    "Nicholls", "Hamilton", "Byrne", "Sutton", "McDonald", "Yates", "Hodgson", "Robson", "Curtis",
    "Hopkins", "O'Connor", "Harper", "Coleman", "Watkins", "Moss", "McCarthy", "Chambers",
    "O'Neill", "Griffin", "Sharp", "Hardy", "Wheeler", "Potter", "Osborne", "Johnston", "Gordon",
    "Doyle", "Wallace", "George", "Jordan", "Hutchinson", "Rahman", "Mahmood", "Iqbal", "Akhtar",
    "Chowdhury", "Mistry", "Sharma", "Nowak", "Kowalski", "Wisniewski", "Okafor", "Adeyemi",
    "Mensah", "Nguyen", "Chen", "Kaya", "Popescu", "Mohamed",
)  # fmt: skip

GIVEN: Final = FEMALE_GIVEN + MALE_GIVEN

NICKNAMES: Final[dict[str, tuple[str, ...]]] = {
    "William": ("Will", "Bill", "Billy"),
    "Elizabeth": ("Beth", "Liz", "Lizzie"),
    "Thomas": ("Tom", "Tommy"),
    "James": ("Jim", "Jamie"),
    "Alexander": ("Alex", "Xander"),
    "Benjamin": ("Ben", "Benji"),
    "Samuel": ("Sam", "Sammy"),
    "Daniel": ("Dan", "Danny"),
    "Joshua": ("Josh",),
    "Matthew": ("Matt",),
    "Christopher": ("Chris",),
    "Jonathan": ("Jon", "Jonny"),
    "Nicholas": ("Nick", "Nicky"),
    "Joseph": ("Joe", "Joey"),
    "Edward": ("Ed", "Eddie", "Ted"),
    "Oliver": ("Ollie",),
    "Henry": ("Harry", "Hal"),
    "Charles": ("Charlie",),
    "Frederick": ("Freddie", "Fred"),
    "Theodore": ("Theo", "Teddy"),
    "Archibald": ("Archie",),
    "Zachary": ("Zac", "Zach"),
    "Jacob": ("Jake",),
    "Nathaniel": ("Nate", "Nat"),
    "Robert": ("Rob", "Bobby"),
    "Michael": ("Mike", "Mikey"),
    "Anthony": ("Tony",),
    "Mohammed": ("Mo",),
    "Gabriel": ("Gabe",),
    "Sebastian": ("Seb",),
    "Maximilian": ("Max",),
    "Stanley": ("Stan",),
    "Leonardo": ("Leo",),
    "Katherine": ("Kate", "Katie", "Kat"),
    "Catherine": ("Cath", "Cathy", "Kate"),
    "Margaret": ("Maggie", "Meg"),
    "Victoria": ("Vicky", "Tori"),
    "Charlotte": ("Lottie", "Charlie"),
    "Isabella": ("Bella", "Izzy"),
    "Isabelle": ("Izzy", "Belle"),
    "Olivia": ("Liv", "Livvy"),
    "Amelia": ("Millie", "Mia"),
    "Jessica": ("Jess",),
    "Rebecca": ("Becky", "Becca"),
    "Alexandra": ("Alex", "Lexi"),
    "Samantha": ("Sam",),
    "Florence": ("Flo", "Florrie"),
    "Eleanor": ("Ellie", "Nell"),
    "Gabriella": ("Gabby",),
    "Abigail": ("Abbie", "Abi"),
    "Matilda": ("Tilly",),
    "Penelope": ("Penny",),
    "Josephine": ("Josie",),
    "Madeleine": ("Maddie",),
    "Harriet": ("Hattie",),
    "Georgina": ("Georgie",),
    "Annabelle": ("Annie",),
    "Natasha": ("Tasha",),
    "Jennifer": ("Jen", "Jenny"),
    "Frances": ("Fran",),
}

SAINTS: Final = (
    "Mary", "Joseph", "Anne", "Patrick", "Peter", "Paul", "Francis", "Theresa", "Bartholomew",
    "John", "Augustine", "Benedict", "Chad", "Margaret", "Wilfrid", "Edmund", "Nicholas",
)  # fmt: skip

# Names parents give twins to go together: rhymes, one letter apart, a boy's and a girl's form of
# one name. Harry and Henry are one name in two forms, like Archie and Archibald: the hardest
# near-miss there is. A name not in the lists above (Bella, Theo) is one a twin may well have.
# Keyed by (elder is female, younger is female); each pair is (elder's name, younger's name).
LOOKALIKE_TWINS: Final[dict[tuple[bool, bool], tuple[tuple[str, str], ...]]] = {
    (True, True): (
        ("Ella", "Bella"), ("Ava", "Eva"), ("Amelia", "Emilia"), ("Lily", "Lucy"),
        ("Evie", "Ellie"), ("Maya", "Mia"), ("Rosie", "Ruby"), ("Holly", "Ivy"),
        ("Hannah", "Anna"), ("Chloe", "Zoe"), ("Layla", "Lila"), ("Isla", "Ella"),
    ),
    (False, False): (
        ("Alfie", "Archie"), ("Freddie", "Teddy"), ("Jacob", "Joshua"), ("Leo", "Theo"),
        ("Oscar", "Oliver"), ("Mason", "Jason"), ("Ethan", "Evan"), ("Kai", "Kian"),
        ("Callum", "Connor"), ("Aarav", "Arjun"), ("Hamza", "Hassan"), ("Harry", "Henry"),
    ),
    (False, True): (
        ("Oliver", "Olivia"), ("Louis", "Louise"), ("Daniel", "Danielle"), ("Charlie", "Charlotte"),
        ("Alexander", "Alexandra"), ("Samuel", "Samantha"), ("Harry", "Harriet"),
        ("George", "Georgina"), ("Joseph", "Josephine"), ("Nicholas", "Nicola"),
    ),
    (True, False): (
        ("Olivia", "Oliver"), ("Ella", "Elliot"), ("Jessica", "Jack"), ("Georgina", "George"),
        ("Frances", "Francis"), ("Isabella", "Isaac"), ("Millie", "Max"),
    ),
}  # fmt: skip
