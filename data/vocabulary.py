"""The closed vocabulary of the embedded long-document corpus.

Each attribute has its own small set of values and no value word appears anywhere else, so a fact can be
found by what its value *is* (content) rather than where it sits: a tiny model learns that quickly, and the
only thing a shorter input takes away is the facts past the cut.
"""

ATTRIBUTES: dict[str, list[str]] = {
    "colour": ["red", "blue", "green", "yellow", "purple", "orange", "black", "white"],
    "city": ["paris", "tokyo", "lima", "oslo", "cairo", "delhi", "quito", "perth"],
    "animal": ["otter", "falcon", "badger", "lizard", "walrus", "beetle", "heron", "lynx"],
    "metal": ["copper", "silver", "nickel", "cobalt", "zinc", "tin", "iron", "gold"],
    "fruit": ["mango", "plum", "cherry", "lemon", "peach", "guava", "kiwi", "melon"],
    "planet": ["mercury", "venus", "mars", "jupiter", "saturn", "uranus", "neptune", "pluto"],
    "instrument": ["violin", "cello", "flute", "oboe", "harp", "tuba", "banjo", "drum"],
    "weekday": ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "holiday"],
    "gem": ["ruby", "opal", "pearl", "topaz", "jade", "amber", "garnet", "onyx"],
    "tree": ["oak", "maple", "birch", "cedar", "willow", "aspen", "elm", "pine"],
    "sport": ["tennis", "rugby", "hockey", "golf", "rowing", "fencing", "cricket", "skiing"],
    "drink": ["coffee", "tea", "cocoa", "cider", "juice", "milk", "soda", "water"],
    "fabric": ["silk", "wool", "linen", "denim", "velvet", "cotton", "satin", "tweed"],
    "spice": ["pepper", "cumin", "saffron", "ginger", "nutmeg", "clove", "anise", "basil"],
    "vehicle": ["tram", "ferry", "truck", "glider", "sled", "canoe", "scooter", "wagon"],
    "bird": ["robin", "eagle", "parrot", "swan", "crow", "owl", "finch", "gull"],
}

# Neutral report prose: none of these is an attribute or a value.
FILLER = """
the a an of to in on for with by from at as and or but that which this these those it its their our
report agency office program budget committee review federal state local policy plan analysis data
year years month period fiscal funds funding cost costs spending revenue account accounts audit
official officials staff members member team group board council department bureau division unit
said noted found stated described reported recommended concluded estimated expected proposed
requested required received provided reviewed identified assessed examined considered approved
system systems process processes service services project projects contract contracts grant grants
public private national regional federal general annual current recent prior future initial final
new major minor key several many most some other each every such more less further additional
management oversight performance risk risks control controls compliance guidance standards rules
information records documents evidence results findings issues concerns challenges options actions
meeting meetings session discussion hearing testimony statement summary section chapter appendix
response comments letter request requests questions answers purpose scope method methods approach
was were is are be been being has have had will would could should may might can must not also
increase decrease change changes growth level levels rate rates amount amounts number total share
support supports improve improves ensure ensures address addresses manage manages develop develops
community communities agencies programs offices states areas area region regions sector sectors
health education housing energy transport defense labor trade security safety justice
employees workers contractors users citizens residents partners stakeholders participants
time schedule timeline deadline progress status goal goals target targets measure measures
""".split()

STRUCTURE = [".", ",", ":", "?", "what", "question"]


def all_words() -> list[str]:
    """Every word the generator can emit, in a fixed order (the tokenizer's vocabulary)."""
    words: list[str] = []
    for attribute, values in ATTRIBUTES.items():
        words.append(attribute)
        words.extend(values)
    words.extend(FILLER)
    words.extend(STRUCTURE)
    return list(dict.fromkeys(words))  # dedupe, keep order
