"""Which given names are the same name: spelling variants, short forms and pet names.

Written from general knowledge of English usage (with a few spelling families common in England's
larger communities), not from any test population: the table must hold for the children the
gateway will meet, not for a generator's name lists.

Each entry is (the spellings of one full name, its short forms). Two names are equivalent when

- both are spellings of the same full name (Catherine / Katherine), or
- one is a spelling of a full name and the other one of its short forms (Robert / Bob), or
- both are short forms of exactly the same full names (Bob / Rob, both only Robert).

The last rule is deliberately narrow. Many short forms are also popular names in their own right
and shorten several full names: Freddie shortens Frederick and Alfred, Alfie only Alfred. Matching
any two short forms of a shared full name would call twins named Alfie and Freddie the same child,
which is the one mistake linkage must not make.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Final

_ENTRIES: Final[tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]] = (
    # Female names.
    (("Abigail",), ("Abby", "Abbie", "Abbi", "Abi", "Gail")),
    (("Adelaide", "Adeline"), ("Addie", "Addy", "Ada")),
    (("Agnes",), ("Aggie", "Nessa", "Nessie")),
    (("Alexandra", "Alexandria"), ("Alex", "Alexa", "Alexis", "Lexi", "Lexie", "Sandy", "Sasha")),
    (("Alice", "Alicia"), ("Ally", "Allie", "Ali")),
    (("Alison", "Allison"), ("Ali", "Ally", "Allie")),
    (("Amanda",), ("Mandy", "Manda")),
    (("Amelia",), ("Millie", "Milly", "Mel")),
    (("Anastasia",), ("Ana", "Stacey", "Stacy", "Tasha", "Stasia")),
    (("Andrea",), ("Andie", "Andi")),
    (("Angela",), ("Angie", "Ange")),
    (("Anne", "Ann"), ("Annie", "Nan", "Nancy", "Nanette")),
    (("Anna", "Ana"), ("Annie",)),
    (("Annabel", "Annabelle", "Annabella"), ("Annie", "Bella", "Belle")),
    (("Antonia",), ("Toni", "Tonia")),
    (("Arabella",), ("Bella", "Belle", "Ari")),
    (("Barbara",), ("Barb", "Babs", "Barbie")),
    (("Beatrice", "Beatrix"), ("Bea", "Bee", "Trixie", "Trix")),
    (("Bernadette",), ("Bernie", "Detta")),
    (("Bethany",), ("Beth",)),
    (("Bridget", "Bridgette", "Brigid"), ("Bridie", "Biddy")),
    (("Camilla",), ("Millie", "Milly", "Cammie", "Cam")),
    (("Caroline", "Carolyn", "Carolina"), ("Carrie", "Caro", "Carol", "Lina")),
    (("Cassandra",), ("Cass", "Cassie", "Sandy")),
    (
        ("Catherine", "Katherine", "Katharine", "Kathryn", "Catharine", "Kathrine"),
        (
            "Cathy",
            "Cath",
            "Kathy",
            "Kath",
            "Kate",
            "Katie",
            "Katy",
            "Kat",
            "Cat",
            "Cate",
            "Kit",
            "Kitty",
            "Kay",
        ),
    ),
    (("Cecilia", "Cecily", "Cecile"), ("Cissy", "Cissie", "Cece", "Celia")),
    (("Charlotte",), ("Charlie", "Lottie", "Lotte", "Lotty", "Char")),
    (("Christina", "Christine", "Kristina", "Kristine"), ("Chris", "Chrissie", "Chrissy", "Tina")),
    (("Clare", "Claire", "Clara"), ()),
    (("Constance",), ("Connie",)),
    (("Cordelia",), ("Delia", "Cordy")),
    (("Cynthia",), ("Cindy",)),
    (("Deborah", "Debora", "Debra"), ("Debbie", "Debby", "Deb", "Debs")),
    (("Diana", "Diane", "Dianne"), ("Di",)),
    (("Dorothy", "Dorothea"), ("Dot", "Dottie", "Dolly", "Dora")),
    (("Edith",), ("Edie", "Edy")),
    (
        ("Eleanor", "Elinor", "Eleanore", "Eleanora", "Leonora"),
        ("Ellie", "Elle", "Ella", "Nell", "Nellie", "Nelly", "Nora", "Norah"),
    ),
    (
        ("Elizabeth", "Elisabeth"),
        (
            "Beth",
            "Betty",
            "Bettie",
            "Betsy",
            "Bess",
            "Bessie",
            "Eliza",
            "Elsie",
            "Elsa",
            "Liz",
            "Lizzie",
            "Lizzy",
            "Liza",
            "Lisa",
            "Libby",
            "Lilibet",
            "Ellie",
            "Elise",
        ),
    ),
    (("Ellen", "Helen", "Helena"), ("Nell", "Nellie", "Ellie", "Lena")),
    (("Emily", "Emilie"), ("Em", "Emmy", "Emmie", "Millie", "Milly")),
    (("Emilia",), ("Em", "Emmy", "Emmie", "Millie", "Milly", "Mila")),
    (("Emma",), ("Em", "Emmy", "Emmie")),
    (("Esther",), ("Essie", "Hetty")),
    (("Evangeline",), ("Evie", "Eva", "Angie")),
    (("Eve", "Eva"), ("Evie",)),
    (("Evelyn", "Evelyne", "Eveline"), ("Evie", "Eve", "Lyn")),
    (("Florence",), ("Flo", "Florrie", "Flossie", "Floss", "Flossy")),
    (("Frances", "Francesca"), ("Fran", "Frankie", "Franny", "Francie", "Fanny", "Cesca")),
    (("Gabriella", "Gabrielle", "Gabriela"), ("Gabby", "Gabbie", "Gabi", "Brie", "Ella", "Ellie")),
    (("Georgina", "Georgia", "Georgiana"), ("Georgie", "Gina")),
    (("Geraldine",), ("Gerry", "Geri", "Dina")),
    (("Gertrude",), ("Gertie", "Trudy", "Trudie")),
    (("Gillian", "Jillian"), ("Gill", "Gilly", "Jill")),
    (("Grace",), ("Gracie",)),
    (("Gwendolen", "Gwendolyn"), ("Gwen", "Wendy")),
    (("Hannah", "Hanna"), ("Han", "Hannie")),
    (("Harriet", "Harriett"), ("Hattie", "Hatty", "Hetty", "Etta")),
    (("Henrietta",), ("Hetty", "Hettie", "Etta", "Henny", "Retta")),
    (("Imogen",), ("Immy", "Imo")),
    (
        ("Isabel", "Isabella", "Isabelle", "Isobel", "Izabela", "Isabela"),
        ("Bella", "Belle", "Izzy", "Izzie", "Issy", "Isa", "Ibby"),
    ),
    (("Jacqueline",), ("Jackie", "Jacqui", "Jacky")),
    (("Jane",), ("Janie", "Jenny")),
    (("Janet",), ("Jan", "Netty")),
    (("Jasmine", "Jasmin", "Jazmin", "Yasmin", "Yasmine"), ("Jas", "Jaz", "Jazz", "Jazzy")),
    (("Jennifer",), ("Jen", "Jenny", "Jenni", "Jennie", "Jenna")),
    (("Jessica",), ("Jess", "Jessie", "Jessy")),
    (("Joanna", "Joanne", "Johanna"), ("Jo", "Jojo")),
    (("Josephine",), ("Jo", "Josie", "Jojo", "Fifi")),
    (("Judith",), ("Judy", "Judi", "Jude")),
    (("Julia", "Juliana", "Julie"), ("Jules",)),
    (("Juliet", "Juliette"), ("Jules", "Julie")),
    (("Katrina", "Catrina", "Catriona"), ("Kat", "Trina")),
    (("Kimberley", "Kimberly"), ("Kim", "Kimmy")),
    (("Laura",), ("Laurie", "Lori")),
    (("Lauren",), ("Laurie", "Loz")),
    (("Leah", "Lea", "Lia"), ()),
    (("Lillian", "Lilian"), ("Lily", "Lil", "Lilly", "Lillie")),
    (("Lily", "Lilly", "Lillie"), ("Lil",)),
    (("Louisa", "Louise"), ("Lou", "Lulu")),
    (("Lucinda",), ("Lucy", "Cindy")),
    (("Lucy", "Lucia", "Lucie", "Lucille"), ("Lu", "Luce")),
    (("Madeleine", "Madeline", "Madelyn", "Madalyn"), ("Maddie", "Maddy", "Mads")),
    (("Magdalena", "Magdalene"), ("Magda", "Lena")),
    (
        ("Margaret", "Margarita", "Marguerite"),
        (
            "Maggie",
            "Mags",
            "Meg",
            "Peggy",
            "Peg",
            "Maisie",
            "Margot",
            "Margo",
            "Marge",
            "Margie",
            "Greta",
            "Daisy",
            "Rita",
            "Madge",
        ),
    ),
    (("Martha",), ("Marty", "Mattie", "Patty")),
    (("Mary", "Maria", "Marie"), ("Molly", "Polly", "Mae", "May", "Mamie", "Minnie")),
    (("Maryam", "Mariam", "Maryum", "Miriam"), ("Mimi", "Miri")),
    (("Matilda", "Mathilda"), ("Tilly", "Tillie", "Tilda", "Mattie", "Maud", "Maude")),
    (("Megan", "Meghan", "Meagan"), ("Meg", "Meggie")),
    (("Melanie",), ("Mel", "Mellie")),
    (("Melissa",), ("Mel", "Missy", "Lissa")),
    (("Michelle",), ("Shelley", "Shelly", "Shell")),
    (("Mildred",), ("Millie", "Milly")),
    (("Millicent",), ("Millie", "Milly", "Mills")),
    (("Miranda",), ("Mandy", "Randi")),
    (("Natalie", "Natalia", "Nathalie"), ("Nat", "Nattie", "Talia", "Tally")),
    (("Natasha",), ("Tasha", "Tash", "Nat")),
    (("Nicola", "Nicole"), ("Nicky", "Nikki", "Nic", "Nicki")),
    (("Olivia",), ("Liv", "Livvy", "Livvie", "Livi", "Ollie", "Olly")),
    (("Pamela",), ("Pam", "Pammy")),
    (("Patricia",), ("Pat", "Patty", "Patsy", "Tricia", "Trish", "Trisha")),
    (("Penelope",), ("Penny", "Pen")),
    (("Philippa", "Phillipa"), ("Pippa", "Pip", "Pippi")),
    (("Priscilla",), ("Cilla", "Prissy")),
    (("Rachel", "Rachael"), ("Rach", "Rae")),
    (("Rebecca", "Rebekah"), ("Becky", "Becca", "Bex", "Becks", "Beckie")),
    (("Roberta",), ("Bobbie", "Robbie", "Berta")),
    (("Rosalind", "Rosalyn", "Rosalie", "Rosamund"), ("Rosie", "Ros", "Roz")),
    (("Rose", "Rosa"), ("Rosie",)),
    (("Rosemary",), ("Rosie", "Rose", "Romy")),
    (("Ruth",), ("Ruthie",)),
    (("Samantha",), ("Sam", "Sammy", "Sammie", "Sami")),
    (("Sandra",), ("Sandy", "Sandie")),
    (("Sarah", "Sara"), ("Sally", "Sadie", "Sal")),
    (("Scarlett", "Scarlet"), ()),
    (("Sophia", "Sophie", "Sofia", "Sofie", "Sophy"), ("Soph",)),
    (("Stephanie",), ("Steph", "Stevie", "Steff", "Stephie")),
    (("Susan", "Susanna", "Susannah", "Suzanne", "Susanne"), ("Sue", "Susie", "Suzy", "Suzie")),
    (("Sylvia",), ("Syl", "Sylvie")),
    (("Teresa", "Theresa"), ("Tess", "Tessa", "Terri", "Terry", "Tessie")),
    (("Theodora",), ("Thea", "Dora", "Teddie")),
    (("Valerie",), ("Val",)),
    (("Veronica",), ("Ronnie", "Roni", "Nicky")),
    (("Victoria",), ("Vicky", "Vicki", "Vickie", "Tori", "Tory", "Vic")),
    (("Virginia",), ("Ginny", "Ginnie", "Ginger")),
    (("Vivian", "Vivienne", "Vivien"), ("Viv",)),
    (("Wilhelmina",), ("Mina", "Willa", "Billie", "Minnie")),
    (("Winifred",), ("Winnie", "Win", "Freda")),
    (("Yvonne",), ("Vonnie",)),
    (("Zoe", "Zoey"), ()),
    # Female names common in England's South Asian, Arab and African communities.
    (("Aisha", "Ayesha", "Aysha", "Aishah", "Ayesa"), ()),
    (("Fatima", "Fatimah", "Fatma"), ()),
    (("Zainab", "Zaynab", "Zeinab"), ()),
    (("Amira", "Amirah", "Ameera"), ()),
    (("Layla", "Laila", "Leila", "Lailah", "Leyla"), ()),
    (("Khadija", "Khadijah", "Khadeeja"), ()),
    # Male names.
    (("Abraham",), ("Abe", "Bram")),
    (("Adrian",), ("Ade", "Adie")),
    (("Aiden", "Aidan", "Ayden", "Aden"), ()),
    (("Albert",), ("Al", "Bert", "Bertie", "Albie")),
    (
        ("Alexander", "Alexandre", "Aleksander"),
        ("Alex", "Alec", "Alick", "Xander", "Zander", "Sandy", "Lex", "Sasha"),
    ),
    (("Alfred",), ("Alf", "Alfie", "Alfy", "Fred", "Freddie", "Freddy")),
    (("Alistair", "Alastair", "Alasdair", "Alister"), ("Al",)),
    (("Alan", "Allan", "Allen"), ("Al",)),
    (("Andrew",), ("Andy", "Drew", "Andie")),
    (("Angus",), ("Gus",)),
    (("Anthony", "Antony"), ("Tony", "Ant")),
    (("Archibald",), ("Archie", "Archy", "Arch", "Baldie")),
    (("Arthur",), ("Art", "Artie", "Arty")),
    (("Augustus", "Augustine", "August"), ("Gus", "Gussie", "Augie")),
    (("Barnaby", "Barnabas"), ("Barney", "Barny")),
    (("Bartholomew",), ("Bart", "Barty")),
    (("Benedict",), ("Ben", "Benny", "Bennie")),
    (("Benjamin",), ("Ben", "Benny", "Bennie", "Benji", "Benjy")),
    (("Bernard",), ("Bernie", "Barney")),
    (("Bertram", "Bertrand"), ("Bert", "Bertie")),
    (("Bradley",), ("Brad",)),
    (("Callum", "Calum"), ("Cal",)),
    (("Cameron",), ("Cam", "Cammy")),
    (("Charles",), ("Charlie", "Chas", "Chaz", "Chuck", "Chick")),
    (("Christian",), ("Chris", "Kris", "Christie")),
    (("Christopher", "Kristopher"), ("Chris", "Kris", "Kit", "Topher", "Christie")),
    (("Clement",), ("Clem",)),
    (("Clifford",), ("Cliff",)),
    (("Colin",), ("Col",)),
    (("Connor", "Conor", "Conner"), ("Con",)),
    (("Daniel",), ("Dan", "Danny", "Dannie", "Dani")),
    (("David", "Dafydd"), ("Dave", "Davy", "Davey", "Dai")),
    (("Dennis", "Denis"), ("Den", "Denny")),
    (("Desmond",), ("Des", "Dessie")),
    (("Dominic", "Dominick"), ("Dom", "Dommie")),
    (("Donald",), ("Don", "Donnie", "Donny")),
    (("Douglas",), ("Doug", "Dougie", "Duggie")),
    (("Edgar",), ("Ed", "Eddie", "Eddy", "Ned")),
    (("Edmund", "Edmond"), ("Ed", "Eddie", "Eddy", "Ned", "Ted")),
    (("Edward",), ("Ed", "Eddie", "Eddy", "Ned", "Neddy", "Ted", "Teddy")),
    (("Edwin",), ("Ed", "Eddie", "Eddy")),
    (("Elijah",), ("Eli", "Lije")),
    (("Elliot", "Elliott", "Eliot"), ()),
    (("Emmanuel", "Immanuel"), ("Manny",)),
    (("Ernest",), ("Ernie",)),
    (("Eugene",), ("Gene",)),
    (("Ezekiel",), ("Zeke",)),
    (("Finley", "Finlay"), ("Finn", "Fin")),
    (("Francis",), ("Frank", "Frankie", "Fran")),
    (("Frederick", "Frederic", "Fredrick"), ("Fred", "Freddie", "Freddy", "Fritz")),
    (("Gabriel",), ("Gabe", "Gabby")),
    (("Gareth",), ("Gaz",)),
    (("Geoffrey", "Jeffrey", "Jeffery", "Geoffery"), ("Geoff", "Jeff")),
    (("George",), ("Georgie", "Geordie")),
    (("Gerald", "Gerard"), ("Gerry", "Jerry", "Ged")),
    (("Gilbert",), ("Gil", "Bert")),
    (("Graham", "Graeme", "Grahame"), ()),
    (("Gregory",), ("Greg",)),
    (("Harold",), ("Harry", "Hal")),
    (("Harrison",), ("Harry",)),
    (("Henry",), ("Harry", "Hal", "Hank")),
    (("Herbert",), ("Herb", "Herbie", "Bert")),
    (("Hugh", "Hugo"), ("Hughie",)),
    (("Ian", "Iain"), ()),
    (("Isaac", "Isaak"), ("Ike", "Izzy")),
    (("Jack",), ("Jackie", "Jacky")),
    (("Jacob", "Jakob"), ("Jake", "Jakey")),
    (("Jakub",), ("Kuba", "Jake")),
    (("James",), ("Jim", "Jimmy", "Jimmie", "Jamie", "Jem")),
    (("John", "Jon"), ("Jack", "Johnny", "Johnnie", "Jonny")),
    (("Jonathan", "Jonathon"), ("Jon", "Jonny", "Jonno", "Jonty")),
    (("Joseph",), ("Joe", "Joey", "Jos")),
    (("Joshua",), ("Josh",)),
    (("Julian", "Julius"), ("Jules",)),
    (("Kenneth",), ("Ken", "Kenny")),
    (("Kevin",), ("Kev",)),
    (("Kieran", "Ciaran", "Kieron"), ()),
    (("Lawrence", "Laurence"), ("Larry", "Laurie", "Lawrie", "Loz")),
    (("Leonard",), ("Len", "Lenny", "Leo")),
    (("Leonardo",), ("Leo",)),
    (("Leopold",), ("Leo",)),
    (("Louis", "Lewis", "Luis"), ("Lou", "Louie", "Lewie")),
    (("Malcolm",), ("Mal", "Malc")),
    (("Mark", "Marc"), ()),
    (("Martin",), ("Marty",)),
    (("Matthew", "Mathew"), ("Matt", "Matty", "Mat")),
    (("Maximilian", "Maximillian", "Maxwell", "Maximus"), ("Max", "Maxie")),
    (("Michael",), ("Mike", "Mikey", "Mick", "Micky", "Mickey")),
    (("Mitchell",), ("Mitch",)),
    (("Montgomery",), ("Monty",)),
    (
        ("Muhammad", "Mohammed", "Mohammad", "Muhammed", "Mohamed", "Mohamad", "Mohammod"),
        ("Mo", "Mohd", "Md"),
    ),
    (("Nathan",), ("Nate", "Nat")),
    (("Nathaniel", "Nathanael"), ("Nat", "Nate", "Nathan", "Natty")),
    (("Neil", "Neal"), ()),
    (("Nicholas", "Nicolas", "Nickolas", "Nikolas"), ("Nick", "Nicky", "Nico", "Nic")),
    (("Norman",), ("Norm",)),
    (("Oliver",), ("Ollie", "Olly", "Oli", "Olli")),
    (("Oscar",), ("Ozzy", "Ozzie", "Ossie")),
    (("Oswald",), ("Ozzy", "Ozzie", "Ossie", "Oz")),
    (("Owen", "Owain"), ()),
    (("Patrick",), ("Pat", "Paddy", "Patsy")),
    (("Percival", "Percy"), ("Perce",)),
    (("Peter",), ("Pete", "Petey")),
    (("Philip", "Phillip"), ("Phil", "Pip")),
    (("Ralph",), ("Rafe",)),
    (("Raymond",), ("Ray",)),
    (("Reginald",), ("Reg", "Reggie")),
    (("Reuben", "Ruben"), ("Rube",)),
    (("Rhys", "Reece", "Reese", "Rees"), ()),
    (("Richard",), ("Rich", "Richie", "Ritchie", "Rick", "Ricky", "Dick", "Dickie")),
    (("Riley", "Reilly", "Rylee"), ()),
    (("Robert",), ("Rob", "Robbie", "Robby", "Bob", "Bobby", "Bobbie", "Rab", "Bert")),
    (("Roderick", "Rodney"), ("Rod", "Roddy")),
    (("Ronald",), ("Ron", "Ronnie", "Ronny")),
    (("Samuel",), ("Sam", "Sammy", "Sammie")),
    (("Sean", "Shaun", "Shawn"), ()),
    (("Sebastian",), ("Seb", "Sebby", "Bastian")),
    (("Simon",), ("Si", "Sim")),
    (("Stanley",), ("Stan",)),
    (("Stephen", "Steven"), ("Steve", "Stevie")),
    (("Stuart", "Stewart"), ("Stu",)),
    (("Terence", "Terrence"), ("Terry", "Tel")),
    (("Theodore",), ("Theo", "Ted", "Teddy", "Teddie")),
    (("Thomas",), ("Tom", "Tommy", "Tommie", "Thom")),
    (("Timothy",), ("Tim", "Timmy")),
    (("Tobias",), ("Toby", "Tobi")),
    (("Trevor",), ("Trev",)),
    (("Victor",), ("Vic",)),
    (("Vincent",), ("Vince", "Vinnie", "Vinny")),
    (("Walter",), ("Walt", "Wally")),
    (("Wilfred", "Wilfrid"), ("Wilf", "Fred", "Freddie", "Freddy")),
    (("William",), ("Will", "Willie", "Willy", "Bill", "Billy", "Billie", "Liam", "Wills")),
    (("Zachary", "Zachariah", "Zackary"), ("Zach", "Zack", "Zac", "Zak")),
    # Male names common in England's South Asian, Arab and African communities.
    (("Ahmed", "Ahmad", "Ahmet"), ()),
    (("Hassan", "Hasan"), ()),
    (("Hussain", "Hussein", "Husain"), ()),
    (("Ibrahim", "Ibraheem", "Ebrahim"), ()),
    (("Yusuf", "Yusef", "Yousef", "Yousuf", "Youssef"), ()),
    (("Omar", "Umar"), ()),
    (("Hamza", "Hamzah"), ()),
    (("Abdullah", "Abdallah"), ()),
)


# Given names common in England that stand on their own: no variant or short form listed above.
# Recognising them matters as much as the equivalences: two recognised names that are not
# equivalent are two different names, however alike they look (Mia and Maia, Ella and Bella),
# and only an unrecognised spelling is compared for likely keying slips.
_STANDALONE: Final[tuple[str, ...]] = (
    # Female names.
    "Amber", "Aoife", "Aria", "Autumn", "Ava", "Ayla", "Bonnie", "Caitlin", "Chloe", "Courtney",
    "Eden", "Erin", "Esme", "Freya", "Hallie", "Harper", "Hazel", "Holly", "Iris", "Isla", "Ivy",
    "Jade", "Kayla", "Kelsey", "Lola", "Luna", "Lyla", "Maya", "Mia", "Niamh", "Olive", "Orla",
    "Paige", "Phoebe", "Poppy", "Robyn", "Ruby", "Shannon", "Sienna", "Skye", "Summer", "Violet",
    "Willow",
    # Male names.
    "Aaron", "Adam", "Arlo", "Austin", "Bailey", "Bilal", "Caleb", "Carter", "Dylan", "Ellis",
    "Ethan", "Ezra", "Felix", "Harley", "Harvey", "Hunter", "Jasper", "Jayden", "Jenson", "Joel",
    "Jordan", "Jude", "Kai", "Kyle", "Levi", "Logan", "Luca", "Lucas", "Luke", "Mason", "Musa",
    "Noah", "Rory", "Rowan", "Ryan", "Tyler", "Zayn",
)  # fmt: skip


def _key(name: str) -> str:
    """The table's names are plain unaccented words, so case-folding gives the key that
    gateway.linkage.person builds from a record's name."""
    return name.casefold()


def _build() -> dict[str, frozenset[str]]:
    equivalent: defaultdict[str, set[str]] = defaultdict(set)
    shortens: defaultdict[str, set[int]] = defaultdict(set)
    for index, (spellings, short_forms) in enumerate(_ENTRIES):
        full = {_key(name) for name in spellings}
        short = {_key(name) for name in short_forms}
        for name in full:
            equivalent[name] |= full | short
        for name in short:
            equivalent[name] |= full
            shortens[name].add(index)
    by_full_names: defaultdict[frozenset[int], set[str]] = defaultdict(set)
    for name, entries in shortens.items():
        by_full_names[frozenset(entries)].add(name)
    for group in by_full_names.values():
        for name in group:
            equivalent[name] |= group
    return {name: frozenset(others - {name}) for name, others in equivalent.items()}


_EQUIVALENT: Final[Mapping[str, frozenset[str]]] = _build()
_RECOGNISED: Final = frozenset(_EQUIVALENT) | {_key(name) for name in _STANDALONE}


def equivalent_names(key: str) -> frozenset[str]:
    """The other names (as normalised keys) that may stand for the same person as `key`."""
    return _EQUIVALENT.get(key, frozenset())


def is_recognised(key: str) -> bool:
    """True for a name in the table (with or without equivalents): a name, not a keying slip."""
    return key in _RECOGNISED
