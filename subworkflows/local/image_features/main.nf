/*
    IMAGE_FEATURES: H&E tiles around every spot -> BYOL features in obsm['X_image'] (per slice)
*/

include { SPATIALDOMAINS_IMAGE_TILES    } from '../../../modules/local/spatialdomains/image_tiles'
include { SPATIALDOMAINS_IMAGE_FEATURES } from '../../../modules/local/spatialdomains/image_features'

workflow IMAGE_FEATURES {

    take:
    ch_slices   // channel: [ meta, h5ad, image | [] ]  slices with an image (in the h5ad when [])
    weights     // value: path, BYOL backbone weights or assets/NO_FILE

    main:
    ch_versions = channel.empty()

    SPATIALDOMAINS_IMAGE_TILES(ch_slices)
    ch_versions = ch_versions.mix(SPATIALDOMAINS_IMAGE_TILES.out.versions)

    ch_features_in = ch_slices
        .map { meta, h5ad, image -> [meta, h5ad] }
        .join(SPATIALDOMAINS_IMAGE_TILES.out.tiles)

    SPATIALDOMAINS_IMAGE_FEATURES(ch_features_in, weights)
    ch_versions = ch_versions.mix(SPATIALDOMAINS_IMAGE_FEATURES.out.versions)

    emit:
    h5ad     = SPATIALDOMAINS_IMAGE_FEATURES.out.h5ad   // channel: [ meta, image.h5ad ]
    tiles    = SPATIALDOMAINS_IMAGE_TILES.out.tiles     // channel: [ meta, tiles.npy ]
    versions = ch_versions                              // channel: [ versions.yml ]
}
