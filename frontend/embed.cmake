# Turn a text file into a C string constant: tile_lua_src.
file(READ ${IN} content HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," content "${content}")
file(WRITE ${OUT} "/* generated from frontend/tile.lua */\nconst char tile_lua_src[] = {${content} 0};\n")
