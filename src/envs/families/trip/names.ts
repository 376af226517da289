// Word pools for the synthetic trip-planning world. City names are real Chinese cities (as in the
// paper's Hangzhou example); every hotel, restaurant and attraction name is made up by combining
// these parts, so nothing describes a real business.

export const CITY_POOL: ReadonlyArray<readonly [name: string, province: string]> = [
  ['Hangzhou', 'Zhejiang'],
  ['Ningbo', 'Zhejiang'],
  ['Shaoxing', 'Zhejiang'],
  ['Wenzhou', 'Zhejiang'],
  ['Suzhou', 'Jiangsu'],
  ['Nanjing', 'Jiangsu'],
  ['Wuxi', 'Jiangsu'],
  ['Yangzhou', 'Jiangsu'],
  ['Shanghai', 'Shanghai'],
  ['Hefei', 'Anhui'],
  ['Huangshan', 'Anhui'],
  ['Nanchang', 'Jiangxi'],
  ['Fuzhou', 'Fujian'],
  ['Xiamen', 'Fujian'],
  ['Wuhan', 'Hubei'],
  ['Changsha', 'Hunan'],
  ['Guangzhou', 'Guangdong'],
  ['Shenzhen', 'Guangdong'],
  ['Guilin', 'Guangxi'],
  ['Chengdu', 'Sichuan'],
  ['Chongqing', 'Chongqing'],
  ['Kunming', 'Yunnan'],
  ['Xi\'an', 'Shaanxi'],
  ['Qingdao', 'Shandong'],
  ['Jinan', 'Shandong'],
  ['Beijing', 'Beijing'],
  ['Tianjin', 'Tianjin'],
  ['Zhengzhou', 'Henan'],
];

export const HOTEL_FIRST = ['Lakeside', 'Jade', 'Golden', 'Riverside', 'Bamboo', 'Lotus', 'Plum', 'Silk Road', 'Harbor', 'Pine', 'Crane', 'Orchid', 'Willow', 'Summit'];
export const HOTEL_KIND = ['Grand Hotel', 'Inn', 'Boutique Hotel', 'Hostel', 'Resort', 'Suites', 'Courtyard Hotel', 'Business Hotel'];

export const CUISINES = ['Zhejiang', 'Sichuan', 'Cantonese', 'Hunan', 'Jiangsu', 'Hotpot', 'Vegetarian', 'Seafood', 'Noodles', 'Western'];
export const RESTAURANT_FIRST = ['Old', 'Red', 'Lucky', 'Happy', 'Spring', 'Moon', 'Dragon', 'Phoenix', 'Peach', 'Cloud', 'Little', 'Family', 'Star', 'Garden'];
export const RESTAURANT_KIND = ['Kitchen', 'House', 'Dining Hall', 'Bistro', 'Noodle Bar', 'Tea House', 'Canteen', 'Grill'];

export const ATTRACTION_CATEGORIES = ['museum', 'park', 'temple', 'historic site', 'scenic area', 'gallery', 'theme park', 'market'] as const;
/** Categories that are indoors (matters on rainy days). */
export const INDOOR_CATEGORIES = new Set(['museum', 'gallery', 'market']);
export const ATTRACTION_FIRST = ['West', 'Ancient', 'Hidden', 'Ming', 'Song', 'Purple', 'Heavenly', 'Mist', 'Stone', 'Crystal', 'Maple', 'Tiger', 'Nine Dragons', 'Silver'];
export const ATTRACTION_NOUN: Record<(typeof ATTRACTION_CATEGORIES)[number], string[]> = {
  museum: ['Museum', 'History Museum', 'Art Museum'],
  park: ['Park', 'Botanical Garden', 'Wetland Park'],
  temple: ['Temple', 'Pagoda', 'Monastery'],
  'historic site': ['Old Town', 'City Wall', 'Ancient Street'],
  'scenic area': ['Mountain', 'Lake', 'Gorge'],
  gallery: ['Gallery', 'Exhibition Hall'],
  'theme park': ['Fun World', 'Adventure Park'],
  market: ['Night Market', 'Bazaar'],
};

export const WEATHER = ['sunny', 'cloudy', 'overcast', 'rain', 'storm'] as const;
export const RAINY = new Set(['rain', 'storm']);

export const MODES = ['train', 'flight', 'bus'] as const;
